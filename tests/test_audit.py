"""medistill audit: exact NN search, SSIM, rank AUC, and the flag on real BreastMNIST (small budgets)."""
import json

import numpy as np
import pytest
import torch

from medistill.audit import (AuditConfig, MembershipConfig, loss_attack_auc, most_similar, nearest_neighbors,
                             nearest_neighbors_loop, rank_auc, run_audit, ssim, write_report)
from medistill.audit.membership import average_ranks
from medistill.cli import main
from medistill.data import DataError, ImageSet
from medistill.selection import select

FAST = dict(k=2, embed_epochs=0, max_reference_queries=120, membership=None)  # embed_epochs 0: a seeded untrained ConvNet


# --- nearest neighbours ------------------------------------------------------------------------

@pytest.mark.parametrize("chunks", [(1024, 16384), (7, 100), (1, 1)])
def test_nearest_matches_brute_force(chunks):
    g = torch.Generator().manual_seed(0)
    queries, base = torch.randn(23, 40, generator=g), torch.randn(300, 40, generator=g)
    base[17] = queries[5]  # an exact copy: distance exactly 0
    d, i = nearest_neighbors(queries, base, 4, query_chunk=chunks[0], base_chunk=chunks[1])
    d_ref, i_ref = nearest_neighbors_loop(queries, base, 4)
    assert torch.equal(i, i_ref)
    torch.testing.assert_close(d, d_ref, atol=1e-5, rtol=1e-5)
    assert d[5, 0] == 0 and i[5, 0] == 17
    full = torch.cdist(queries.double(), base.double())
    torch.testing.assert_close(d.double(), full.topk(4, largest=False).values, atol=1e-5, rtol=1e-5)


def test_nearest_leave_one_out():
    g = torch.Generator().manual_seed(1)
    base = torch.randn(200, 16, generator=g)
    base[50] = base[10]  # duplicate pair inside the base
    queries = torch.tensor([10, 3, 199])
    d, i = nearest_neighbors(base[queries], base, 2, exclude_index=queries, base_chunk=64)
    d_ref, i_ref = nearest_neighbors_loop(base[queries], base, 2, exclude_index=queries)
    assert torch.equal(i, i_ref) and (i != queries[:, None]).all()
    assert i[0, 0] == 50 and d[0, 0] == 0
    with pytest.raises(ValueError, match="share D"):
        nearest_neighbors(torch.randn(2, 3), torch.randn(5, 4))


# --- SSIM --------------------------------------------------------------------------------------

def test_ssim_identical_is_one_and_matches_skimage():
    metrics = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(0)
    for channels in (1, 3):
        x = torch.rand(3, channels, 28, 28, generator=g, dtype=torch.float64)
        y = (x + 0.2 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
        torch.testing.assert_close(ssim(x, x), torch.ones(3, dtype=torch.float64))
        ours = ssim(x, y)
        ref = [metrics.structural_similarity(x[b].permute(1, 2, 0).numpy(), y[b].permute(1, 2, 0).numpy(),
                                             gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                             data_range=1.0, channel_axis=2) for b in range(3)]
        np.testing.assert_allclose(ours.numpy(), ref, atol=1e-7)
        assert 0.5 < ours.min() < ours.max() < 0.99


def test_most_similar_matches_pairwise():
    g = torch.Generator().manual_seed(2)
    base, queries = torch.rand(40, 1, 28, 28, generator=g), torch.rand(5, 1, 28, 28, generator=g)
    base[9] = queries[1]
    v, i = most_similar(queries, base, 3, pairs_per_block=32)
    brute = torch.stack([ssim(q[None].expand(40, -1, -1, -1), base) for q in queries])
    top = brute.topk(3, dim=1)
    assert torch.equal(i, top.indices) and i[1, 0] == 9
    torch.testing.assert_close(v, top.values, atol=1e-5, rtol=1e-5)


# --- membership AUC ----------------------------------------------------------------------------

def test_rank_auc_known_answers():
    assert rank_auc([3.0, 1.0], [2.0, 0.0]) == 0.75  # hand count: 3 of 4 pairs ordered
    assert rank_auc([1.0, 1.0], [1.0]) == 0.5  # ties count one half
    assert rank_auc([2.0, 1.0], [1.0, 0.0]) == 0.875  # (1 + 1 + 0.5 + 1) / 4
    assert loss_attack_auc([0.1, 0.2, 0.3], [0.5, 0.9]) == 1.0  # members all lower loss
    assert loss_attack_auc([0.5, 0.9], [0.1, 0.2, 0.3]) == 0.0
    same = np.linspace(0, 1, 101)
    assert loss_attack_auc(same, same) == 0.5
    g = np.random.default_rng(0)
    assert abs(loss_attack_auc(g.normal(size=4000), g.normal(size=4000)) - 0.5) < 0.02
    assert average_ranks(np.array([5.0, 1.0, 5.0, 3.0])).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_rank_auc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    g = np.random.default_rng(1)
    pos, neg = g.integers(0, 6, 57).astype(float), g.integers(0, 5, 43).astype(float)
    expected = roc_auc_score(np.r_[np.ones(57), np.zeros(43)], np.r_[pos, neg])
    assert rank_auc(pos, neg) == pytest.approx(expected, abs=1e-12)


# --- the audit on real data --------------------------------------------------------------------

def _far_from_real(breast, per_class=3) -> ImageSet:
    """Smooth random images (no patient in them): a stand-in for a distilled set."""
    g = torch.Generator().manual_seed(0)
    n = per_class * breast.num_classes
    coarse = torch.rand(n, 1, 7, 7, generator=g)
    pixels = torch.nn.functional.interpolate(coarse, size=28, mode="bilinear", align_corners=False)
    images = (pixels - breast.mean.view(1, -1, 1, 1)) / breast.std.view(1, -1, 1, 1)
    labels = torch.arange(breast.num_classes).repeat_interleave(per_class)
    return ImageSet(images, labels, breast.mean, breast.std, breast.class_names,
                    {"dataset": "breastmnist", "dataset_md5": breast.md5, "method": "test", "ipc": per_class})


def test_audit_flags_exactly_the_planted_real_image(breast, tmp_path, data_root, capsys):
    planted_from = 123
    image_set = _far_from_real(breast)
    image_set.images[4] = breast.train_images[planted_from]
    image_set.labels[4] = breast.train_labels[planted_from]
    path = image_set.save(tmp_path / "planted.pt")
    out, summary = tmp_path / "report", tmp_path / "summary.json"
    assert main(["audit", str(path), "--out", str(out), "--data-root", str(data_root), "--embed-epochs", "0",
                 "--max-reference", "120", "--mia-models", "1", "--mia-epochs", "2", "--json", str(summary),
                 "--threads", "1"]) == 0
    result = json.loads(summary.read_text())
    assert result["flagged_indices"] == [4]
    row = result["per_image"][4]
    assert row["pixel_l2"]["real_indices"][0] == planted_from and row["pixel_l2"]["distances"][0] < 1e-5
    assert row["ssim"]["real_indices"][0] == planted_from and row["ssim"]["values"][0] > 0.9999
    assert row["flagged"] == {"pixel_l2": True, "embedding_l2": True, "ssim": True}
    assert not any(r["flagged"]["pixel_l2"] for j, r in enumerate(result["per_image"]) if j != 4)
    assert 0 <= result["membership_inference"]["attack_auc"] <= 1
    for name in ("audit.md", "audit.json", "nn_distances.png", "closest_pairs.png", "flagged_pairs.png"):
        assert (out / name).exists(), name
    assert "Flagged (pixel space): 1 of 6" in (out / "audit.md").read_text()
    assert "flagged (pixel L2): 1" in capsys.readouterr().out


def test_random_real_subset_is_all_flagged_and_its_members_exposed(breast, tmp_path):
    """A random real subset IS patient data: every image flagged at distance 0 to its source image; and
    networks fit on it give those images lower loss than test images (targeted attack AUC well above 0.5)."""
    subset = select(breast, "random", 10, seed=0)
    cfg = AuditConfig(**{**FAST, "membership": MembershipConfig(num_models=1, epochs=30)})
    result = run_audit(subset, breast, cfg, progress=False)
    assert result.summary["flagged"] == 20 and result.summary["spaces"]["pixel_l2"]["median_ratio"] < 1e-5
    assert [r["pixel_l2"]["real_indices"][0] for r in result.per_image] == subset.metadata["source_indices"]
    mi = result.summary["membership_inference"]
    assert mi["targeted_members"] == 20 and mi["targeted_attack_auc"] > 0.7
    write_report(tmp_path, result)
    assert (tmp_path / "flagged_pairs.png").exists()


def test_audit_refuses_a_set_from_other_data(breast):
    wrong = ImageSet(torch.randn(2, 3, 28, 28), torch.tensor([0, 1]), torch.zeros(3), torch.ones(3),
                     breast.class_names, {"dataset": "breastmnist"})
    with pytest.raises(DataError, match="images are"):
        run_audit(wrong, breast, AuditConfig(**FAST), progress=False)
    other_md5 = _far_from_real(breast)
    other_md5.metadata["dataset_md5"] = "0" * 32
    with pytest.raises(DataError, match="MD5"):
        run_audit(other_md5, breast, AuditConfig(**FAST), progress=False)


def test_real_side_cache_gives_the_same_audit(breast, tmp_path):
    image_set = _far_from_real(breast, per_class=1)
    cfg = AuditConfig(**{**FAST, "cache_dir": str(tmp_path)})
    first = run_audit(image_set, breast, cfg, progress=False).summary
    assert len(list(tmp_path.glob("real-reference-breastmnist-*.pt"))) == 1
    again = run_audit(image_set, breast, cfg, progress=False).summary
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)
