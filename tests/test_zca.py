"""ZCA whitening (MTT's preprocessing): the math, the state that travels with a set, and the CLI end to end."""
import json
import shutil

import numpy as np
import pytest
import torch

from medistill.cli import main
from medistill.data import DataError, ImageSet, ZCA, whiten_dataset
from medistill.evaluate import EvalConfig, evaluate_images
from medistill.ops.dsa_params import DEFAULT_STRATEGY
from medistill.export import write_manifest
from medistill.methods.experts import matching_zca


@pytest.fixture(scope="module")
def zca(breast):
    return ZCA.fit(breast.train_images)


def _covariance(x: torch.Tensor) -> torch.Tensor:
    flat = x.double().flatten(1)
    centred = flat - flat.mean(0)
    return centred.T @ centred / (len(flat) - 1)


def test_fit_whitens_each_eigen_direction_to_s_over_s_plus_eps(breast, zca):
    cov = _covariance(breast.train_images)
    s, u = torch.linalg.eigh(cov)
    w = zca.matrix.double()
    in_eigenbasis = u.T @ w @ cov @ w.T @ u
    expected = torch.diag(s.clamp_min(0) / (s.clamp_min(0) + zca.eps))
    assert (in_eigenbasis - expected).abs().max() < 1e-4
    # the top directions (S ≥ 100·eps) come out with about unit variance; W is symmetric (ZCA, not PCA)
    top = s >= 100 * zca.eps
    assert top.sum() >= 5 and (torch.diagonal(in_eigenbasis)[top] > 0.99).all()
    assert torch.allclose(w, w.T, atol=1e-6)
    # apply() does that to the training images: their covariance is W Σ Wᵀ
    whitened_cov = _covariance(zca.apply(breast.train_images))
    assert (whitened_cov - w @ cov @ w.T).abs().max() < 1e-3


def test_apply_invert_round_trip_and_shapes(breast, zca):
    x = breast.test_images[:50]
    y = zca.apply(x)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert not torch.allclose(y, x, atol=0.1)
    assert (zca.invert(y) - x).abs().max() < 1e-4
    with pytest.raises(DataError, match=r"\(N, 1, 28, 28\)"):
        zca.apply(torch.zeros(2, 3, 28, 28))


def test_state_round_trip_fingerprint_and_determinism(breast, zca, tmp_path):
    again = ZCA.from_state_dict(zca.state_dict())
    assert again.fingerprint == zca.fingerprint and len(zca.fingerprint) == 16
    assert torch.equal(again.matrix, zca.matrix) and torch.equal(again.mean, zca.mean)
    assert ZCA.fit(breast.train_images).fingerprint == zca.fingerprint  # the fit is deterministic
    assert ZCA.fit(breast.train_images, eps=0.01).fingerprint != zca.fingerprint
    loaded = ZCA.load(zca.save(tmp_path / "zca.pt"))
    assert loaded.fingerprint == zca.fingerprint
    state = zca.state_dict()
    state["matrix"] = state["matrix"].clone()
    state["matrix"][0, 0] += 1e-3
    with pytest.raises(DataError, match="modified or corrupted"):
        ZCA.from_state_dict(state)
    assert zca.describe()["state_bytes"] == 4 * (784 * 784 + 784)  # ≈ 2.4 MB at 1×28×28


def test_image_set_carries_the_transform_and_shows_images_dewhitened(breast, zca, tmp_path):
    normalized = breast.train_images[:4]
    s = ImageSet(zca.apply(normalized), breast.train_labels[:4], breast.mean, breast.std, breast.class_names,
                 {"dataset": breast.name}, zca=zca)
    loaded = ImageSet.load(s.save(tmp_path / "set.pt"))
    assert loaded.zca is not None and loaded.zca.fingerprint == zca.fingerprint
    assert loaded.metadata["zca"]["fingerprint"] == zca.fingerprint
    assert (loaded.normalized_images() - normalized).abs().max() < 1e-4
    pixels = (normalized * breast.std.view(1, -1, 1, 1) + breast.mean.view(1, -1, 1, 1)).clamp(0, 1)
    assert (loaded.denormalized() - pixels).abs().max() < 1e-4
    # a file that says ZCA but lost the transform is refused
    payload = torch.load(tmp_path / "set.pt", weights_only=True)
    del payload["zca"]
    torch.save(payload, tmp_path / "stripped.pt")
    with pytest.raises(DataError, match="lacks the transform"):
        ImageSet.load(tmp_path / "stripped.pt")


def test_matching_zca_refuses_a_bank_of_another_space(zca, tmp_path):
    plain = {"dataset": "breastmnist"}
    whitened = {**plain, "zca": True, "zca_eps": 0.1, "zca_fingerprint": zca.fingerprint}
    assert matching_zca(plain, tmp_path, None) is None
    assert matching_zca(whitened, tmp_path, zca) is zca
    with pytest.raises(ValueError, match=f"unwhitened images \\(no ZCA\\).*fingerprint {zca.fingerprint}"):
        matching_zca(plain, tmp_path, zca)
    with pytest.raises(ValueError, match=f"fingerprint {zca.fingerprint}.*zca off"):
        matching_zca(whitened, tmp_path, None)
    other = {**whitened, "zca_fingerprint": "0123456789abcdef"}
    with pytest.raises(ValueError, match=f"fingerprint 0123456789abcdef.*fingerprint {zca.fingerprint}"):
        matching_zca(other, tmp_path, zca)


def _mtt_args(data_root, bank, out, *extra):
    return ["distill", "--dataset", "breastmnist", "--data-root", str(data_root), "--method", "mtt", "--ipc", "1",
            "--preset", "quick", "--experts", str(bank), "--set", "syn_steps=2", "--set", "expert_epochs=1",
            "--set", "max_start_epoch=1", "--iterations", "3", "--eval-models", "1", "--eval-epochs", "3",
            "--out", str(out), *extra]


def test_zca_experts_mtt_evaluate_and_export_end_to_end(breast, zca, data_root, tmp_path, capsys):
    bank, run, pkg = tmp_path / "bank", tmp_path / "run", tmp_path / "pkg"
    assert main(["experts", "--dataset", "breastmnist", "--data-root", str(data_root), "--num-experts", "1",
                 "--epochs", "1", "--zca", "--out", str(bank)]) == 0
    manifest = json.loads((bank / "manifest.json").read_text())
    assert (manifest["zca"], manifest["zca_fingerprint"]) == (True, zca.fingerprint)
    assert ZCA.load(bank / "zca.pt").fingerprint == zca.fingerprint

    # the bank is whitened: an MTT run without zca is refused before the run folder is touched
    assert main(_mtt_args(data_root, bank, tmp_path / "plain")) == 2
    assert "trained on ZCA-whitened images" in capsys.readouterr().err
    assert not (tmp_path / "plain").exists()
    # and a ZCA run refuses a bank without ZCA
    plain_bank = tmp_path / "plain_bank"
    shutil.copytree(bank, plain_bank)
    (plain_bank / "manifest.json").write_text(json.dumps(
        {k: v for k, v in manifest.items() if not k.startswith("zca")}))
    assert main(_mtt_args(data_root, plain_bank, tmp_path / "plain2", "--set", "zca=true")) == 2
    assert "unwhitened images (no ZCA)" in capsys.readouterr().err

    assert main(_mtt_args(data_root, bank, run, "--set", "zca=true")) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["zca"]["fingerprint"] == zca.fingerprint and "same space" in metrics["zca_note"]
    assert json.loads((run / "config.json").read_text())["zca"] is True
    synthetic = ImageSet.load(run)
    assert synthetic.zca.fingerprint == zca.fingerprint

    # `medistill evaluate RUN` scores on the whitened test split: it equals evaluate_images on whitened
    # test images with the same settings (an MTT set: its learned lr, DSA with align_corners=True as the
    # published MTT), and differs from scoring on unwhitened ones
    assert main(["evaluate", str(run), "--data-root", str(data_root), "--models", "1", "--epochs", "3",
                 "--json", str(tmp_path / "eval.json")]) == 0
    scored = json.loads((tmp_path / "eval.json").read_text())
    assert scored["zca"]["fingerprint"] == zca.fingerprint
    cfg = EvalConfig(num_models=1, epochs=3, lr=synthetic.learned_lr, dsa_strategy=DEFAULT_STRATEGY,
                     dsa_align_corners=True)
    args = (synthetic.images, synthetic.labels)
    whitened_test = whiten_dataset(breast, synthetic.zca).test_images
    in_space = evaluate_images(*args, whitened_test, breast.test_labels, 2, breast.task, cfg, progress=False)
    unwhitened = evaluate_images(*args, breast.test_images, breast.test_labels, 2, breast.task, cfg, progress=False)
    assert scored["per_model"] == in_space.to_dict()["per_model"]
    assert in_space.per_model[0]["auc"] != unwhitened.per_model[0]["auc"]

    # the package carries zca.npz (in the manifest); evaluating the package whitens with it
    assert main(["export", str(run), "--out", str(pkg)]) == 0
    assert "zca.npz" in (pkg / "MANIFEST.sha256").read_text()
    meta = json.loads((pkg / "metadata.json").read_text())
    assert meta["files"]["zca"] == "zca.npz" and meta["zca"]["fingerprint"] == zca.fingerprint
    assert "zca.npz" in (pkg / "README.md").read_text()
    arrays = np.load(pkg / "breastmnist.npz")
    assert np.allclose(arrays["train_images_normalized"], synthetic.images.numpy())
    assert main(["evaluate", str(pkg), "--data-root", str(data_root), "--models", "1", "--epochs", "3",
                 "--json", str(tmp_path / "pkg.json")]) == 0
    package_score = json.loads((tmp_path / "pkg.json").read_text())
    assert package_score["summary"]["auc"] == metrics["distilled"]["summary"]["auc"]  # same protocol as the run
    # without the transform the package is refused, even with a manifest rewritten to match
    (pkg / "zca.npz").unlink()
    write_manifest(pkg)
    assert main(["evaluate", str(pkg), "--data-root", str(data_root), "--models", "1", "--epochs", "3"]) == 2
    assert "transform ('zca.npz') is missing" in capsys.readouterr().err
