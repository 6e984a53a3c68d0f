"""DP-DM (issue #23, docs/privacy.md): the accountant, the mechanism, the guard rails and where the guarantee goes.

Tiny budgets throughout (a few iterations on BreastMNIST, one evaluation network of one epoch).
"""
import json
import math

import numpy as np
import pytest
import torch

pytest.importorskip("opacus", reason="DP-DM needs the [dp] extra (opacus)")

from medistill.cli import main  # noqa: E402
from medistill.data import ImageSet  # noqa: E402
from medistill.methods import make_config, make_method  # noqa: E402
from medistill.privacy import (clip_rows, clipped_sum, epsilon_spent, noisy_mean,  # noqa: E402
                               poisson_mask, solve_noise_multiplier)
from medistill.privacy.accountant import ALPHAS as ACCOUNTANT_ALPHAS  # noqa: E402

TINY = ["distill", "--dataset", "breastmnist", "--method", "dm", "--ipc", "2", "--preset", "quick", "--iterations", "4",
        "--eval-models", "1", "--eval-epochs", "1", "--threads", "1"]
UNSCORED = TINY[:-6] + ["--eval-models", "0", "--threads", "1"]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- the accountant --------------------------------------------------------------------------------
def test_accountant_is_opacus_own_call():
    from opacus.accountants import RDPAccountant

    sigma, q, steps, delta = 1.1, 0.01, 1000, 1e-5
    library = RDPAccountant()
    for _ in range(steps):
        library.step(noise_multiplier=sigma, sample_rate=q)
    assert epsilon_spent(sigma, q, steps, delta) == pytest.approx(library.get_epsilon(delta, alphas=ACCOUNTANT_ALPHAS),
                                                                 rel=1e-12)
    # the extended orders only tighten Opacus's default ones
    assert epsilon_spent(sigma, q, steps, delta) <= library.get_epsilon(delta) + 1e-12
    assert epsilon_spent(sigma, q, 0, delta) == 0.0


@pytest.mark.parametrize("target, delta, q, steps", [(1.0, 1e-5, 0.05, 2000), (4.0, 1.8e-4, 0.234, 400),
                                                     (8.0, 1e-3, 1.0, 50)])
def test_solved_sigma_meets_epsilon(target, delta, q, steps):
    sigma = solve_noise_multiplier(target, delta, q, steps)
    spent = epsilon_spent(sigma, q, steps, delta)
    assert spent <= target and spent >= target - 0.011  # Opacus's bisection tolerance is 0.01
    assert epsilon_spent(sigma * 0.97, q, steps, delta) > spent  # less noise spends more


def test_missing_opacus_is_one_line(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "opacus", None)
    with pytest.raises(ImportError, match=r"pip install 'medistill\[dp\]'"):
        solve_noise_multiplier(1.0, 1e-5, 0.1, 10)


# --- the mechanism ---------------------------------------------------------------------------------
def test_clipping_bounds_every_contribution():
    g = torch.Generator().manual_seed(0)
    rows = torch.randn(64, 2048, generator=g)
    rows[::7] *= 1e6  # planted huge-norm examples
    clipped = clip_rows(rows, 3.0)
    assert float(clipped.norm(dim=1).max()) <= 3.0 * (1 + 1e-5)
    small = torch.randn(5, 2048, generator=g) * 1e-3
    assert torch.equal(clip_rows(small, 3.0), small)  # below C: untouched
    # add/remove one example moves the clipped sum by at most C
    assert float((clipped_sum(rows, 3.0) - clipped_sum(rows[1:], 3.0)).norm()) <= 3.0 * (1 + 1e-5)
    assert torch.equal(clipped_sum(rows[:0], 3.0), torch.zeros(2048))


@pytest.mark.parametrize("sigma, clip, count", [(1.7, 3.0, 1.0), (0.8, 20.0, 37.5)])
def test_noise_has_the_stated_scale(sigma, clip, count):
    g = torch.Generator().manual_seed(1)
    draws = torch.stack([noisy_mean(torch.zeros(2048), count, sigma, clip, g) for _ in range(100)])
    stated = sigma * clip / count
    assert float(draws.std()) == pytest.approx(stated, rel=0.02)  # 204,800 draws: ~0.2 % sampling error
    assert abs(float(draws.mean())) < 0.01 * stated


def test_poisson_mask_rate():
    g = torch.Generator().manual_seed(2)
    masks = torch.stack([poisson_mask(500, 0.2, g) for _ in range(200)]).float()
    assert float(masks.mean()) == pytest.approx(0.2, abs=0.005)
    assert 0 < float(masks.sum(1).std()) < 15  # variable batch sizes (binomial: std ≈ 8.9)


def _dp_method(breast, **overrides):
    config = make_config("dm", 2, "quick", **{"dp_epsilon": 4.0, "iterations": 5, "dp_secret_seed": 11, **overrides})
    return make_method("dm", breast, config)


class _Embed(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def embed(self, x):
        return self.fn(x)


def test_step_clips_planted_images_and_noises_at_scale(breast, monkeypatch):
    """Through DPDM.step: with huge embeddings no class mean exceeds C (sum ≤ N_c·C over q·N_c at q = 1, σ = 0);
    with zero embeddings the noisy mean has std σ·C/(q·N_c)."""
    import dataclasses

    import medistill.methods.dp_dm as dp_dm

    method = _dp_method(breast)
    captured = []
    real_loss = dp_dm.distribution_match_loss
    monkeypatch.setattr(dp_dm, "distribution_match_loss", lambda means, *a: captured.append(means) or real_loss(means, *a))
    method.dp = dataclasses.replace(method.dp, noise_multiplier=0.0, sample_rate=1.0)
    method.fresh_network = lambda: _Embed(lambda x: x.flatten(1) * 1e6)
    method.step()
    assert float(captured[-1].norm(dim=1).max()) <= method.dp.clip * (1 + 1e-5)
    method.dp = dataclasses.replace(method.dp, noise_multiplier=2.0, sample_rate=0.5)
    method.fresh_network = lambda: _Embed(lambda x: x.flatten(1) * 0)
    captured.clear()
    for _ in range(40):
        method.step()
    means = torch.stack(captured)  # (40, K, D)
    for c, n_c in enumerate(method.dp.class_sizes):
        stated = 2.0 * method.dp.clip / (0.5 * n_c)
        assert float(means[:, c].std()) == pytest.approx(stated, rel=0.03)


def test_private_draws_do_not_come_from_the_public_seed(breast):
    a = _dp_method(breast, dp_secret_seed=1)
    b = _dp_method(breast, dp_secret_seed=2)
    assert torch.equal(a.images, b.images)  # the public streams: initial noise, networks, DSA
    assert not torch.equal(a.private_generators[0].get_state(), b.private_generators[0].get_state())
    a.step(), b.step()
    assert not torch.equal(a.images, b.images)


# --- guard rails ------------------------------------------------------------------------------------
def test_dp_defaults_to_noise_and_refuses_real_init():
    assert make_config("dm", 10, dp_epsilon=1.0).init == "noise"
    assert make_config("dm", 10).init == "real"  # non-private DM keeps the published default
    with pytest.raises(ValueError, match="init=real"):
        make_config("dm", 10, dp_epsilon=1.0, init="real")
    with pytest.raises(ValueError, match="without dp_epsilon"):
        make_config("dm", 10, dp_clip=1.0)
    with pytest.raises(ValueError, match="dp_epsilon must be a finite"):
        make_config("dm", 10, dp_epsilon=math.inf)


def test_cli_refusals_are_one_line(tmp_path, capsys):
    assert main(TINY + ["--dp-epsilon", "1", "--set", "init=real", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "init=real" in err
    assert main(["distill", "--dataset", "breastmnist", "--method", "dc", "--dp-epsilon", "1",
                 "--out", str(tmp_path / "b")]) == 2
    assert "DM only" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _real_pixels(dataset) -> torch.Tensor:
    return dataset.denormalize(dataset.train_images).flatten(1)  # (N, D) in [0, 1]


def _nearest(x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    return torch.cdist(x.double(), real.double()).min(dim=1).values


def _grid_tiles(path, size=28, channels=1, scale=3, pad=2) -> torch.Tensor:
    from PIL import Image

    canvas = np.asarray(Image.open(path).convert("RGB"))[::scale, ::scale].astype(np.float64) / 255
    rows, cols = (canvas.shape[0] - pad) // (size + pad), (canvas.shape[1] - pad) // (size + pad)
    tiles = []
    for r in range(rows):
        for c in range(cols):
            y, x = pad + r * (size + pad), pad + c * (size + pad)
            tile = canvas[y:y + size, x:x + size]
            tiles.append(tile[..., :1] if channels == 1 else tile)
    return torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2).flatten(1)


def _image_tensors(obj, numel):
    """Every float tensor inside obj whose size is a whole number of images."""
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() and obj.numel() and obj.numel() % numel == 0:
            yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _image_tensors(v, numel)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _image_tensors(v, numel)


def test_no_training_image_reaches_the_run_folder(tmp_path, breast, capsys):
    out = tmp_path / "runs" / "dp"
    assert main(TINY + ["--dp-epsilon", "4", "--out", str(out)]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["checkpoint.pt", "config.json", "loss_curve.png", "metrics.json", "summary.txt",
                     "synthetic_grid.png", "synthetic_set.pt"]
    assert not (tmp_path / "runs" / ".random_baselines").exists()  # no random real subset was trained
    real = _real_pixels(breast)
    loo = torch.cdist(real[:300].double(), real.double())
    loo[torch.arange(300), torch.arange(300)] = math.inf
    threshold = float(torch.quantile(loo.min(dim=1).values, 0.01))  # the audit's 1 % real-to-real rule
    s = ImageSet.load(out / "synthetic_set.pt")
    candidates = {"synthetic_set.pt": s.denormalized().flatten(1),
                  "synthetic_grid.png": _grid_tiles(out / "synthetic_grid.png")}
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=False)
    d = real.shape[1]
    for k, t in enumerate(_image_tensors(checkpoint, d)):  # images, momentum: in the normalised space
        candidates[f"checkpoint tensor {k}"] = (t.reshape(-1, d) * breast.std + breast.mean).float()
    assert len(candidates) >= 3
    for name, x in candidates.items():
        nn = _nearest(x, real)
        assert float(nn.min()) > threshold > 0, name  # no copy (distance 0), nothing as close as real neighbours
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["random"] is None and metrics["comparison"] is None
    assert s.metadata["dataset_md5"] is None
    assert not any(line.startswith("random") for line in (out / "summary.txt").read_text().splitlines())
    # the audit prints the formal guarantee next to its empirical checks
    assert main(["audit", str(out), "--embed-epochs", "1", "--mia-models", "1", "--mia-epochs", "1",
                 "--max-reference", "100", "--threads", "1", "--out", str(tmp_path / "audit")]) == 0
    printed = capsys.readouterr().out
    assert "differential privacy: (ε = " in printed and "membership attack AUC" in printed
    assert "Formal guarantee (DP-DM)" in (tmp_path / "audit" / "audit.md").read_text()
    assert json.loads((tmp_path / "audit" / "audit.json").read_text())["privacy"]["epsilon"] == 4.0


def test_guarantee_travels_and_resume_refuses_other_settings(tmp_path, capsys):
    out = tmp_path / "run"
    base = UNSCORED + ["--dp-epsilon", "2", "--set", "dp_secret_seed=5", "--out", str(out)]
    assert main(base + ["--stop-after", "2"]) == 0
    capsys.readouterr()
    for other in (["--dp-epsilon", "3"], ["--dp-clip", "5"], ["--dp-delta", "1e-6"], ["--set", "dp_sample_rate=0.5"]):
        assert main(base + other + ["--resume"]) == 2
        err = capsys.readouterr().err
        assert "different configuration" in err and "dp_" in err, other
    assert main(base + ["--resume"]) == 0
    config = json.loads((out / "config.json").read_text())["privacy"]
    s = ImageSet.load(out / "synthetic_set.pt")
    record = s.metadata["privacy"]
    assert record["noise_multiplier"] == config["noise_multiplier"] and record["iterations"] == 4
    assert record["epsilon_spent"] <= 2.0 and record["accountant"] == "opacus.accountants.RDPAccountant"
    assert record["accountant_version"].startswith("opacus ")
    assert s.metadata["hyperparameters"]["dp_secret_seed"] == "withheld"
    assert "(ε = " in (out / "summary.txt").read_text()
    # an uninterrupted run with the same secret gives the same set (the private streams resume exactly)
    again = tmp_path / "again"
    assert main(UNSCORED + ["--dp-epsilon", "2", "--set", "dp_secret_seed=5", "--out", str(again)]) == 0
    assert torch.equal(ImageSet.load(again / "synthetic_set.pt").images, s.images)
    # the export: metadata.json (hashed by the manifest) and README
    package = tmp_path / "pkg"
    assert main(["export", str(out), "--out", str(package)]) == 0
    from medistill.export import load_package

    loaded = load_package(package)  # verifies MANIFEST.sha256
    assert loaded.metadata["privacy"]["noise_multiplier"] == record["noise_multiplier"]
    assert loaded.metadata["source_dataset"]["md5"] is None
    assert "metadata.json" in (package / "MANIFEST.sha256").read_text()
    assert "## Differential privacy" in (package / "README.md").read_text()
    assert loaded.image_set.metadata["privacy"]["epsilon"] == 2.0


@pytest.mark.slow
def test_two_ranks_equal_one_process(retina, data_root, tmp_path):
    """Class-parallel DP-DM: each rank draws its classes' samples and noise from their private generators, so two
    ranks (RetinaMNIST's 5 classes split 2/3) give the one-process set and the same guarantee."""
    from medistill.methods import distill
    from tests.test_distributed import _distill_args, _torchrun

    args = ["--ipc", "2", "--iterations", "2", "--set", "batch_real=16", "--dp-epsilon", "4",
            "--set", "dp_secret_seed=3"]
    _torchrun(2, _distill_args(data_root, "retinamnist", "dm", tmp_path / "two", *args))
    cfg = make_config("dm", 2, "quick", iterations=2, batch_real=16, dp_epsilon=4.0, dp_secret_seed=3)
    distill(retina, "dm", cfg, tmp_path / "one", progress=False)
    two, one = ImageSet.load(tmp_path / "two"), ImageSet.load(tmp_path / "one")
    torch.testing.assert_close(two.images, one.images, rtol=1e-4, atol=1e-5)
    assert two.metadata["privacy"] == one.metadata["privacy"]


def test_set_metadata_withholds_the_private_data_fingerprints(breast):
    method = _dp_method(breast)
    s = method.synthetic_set({"dataset_md5": "abc", "hyperparameters": {"dp_secret_seed": 11},
                              "dataset_provenance": {"content_md5": "a", "fingerprint": "b", "bytes": 3, "size": 28}})
    prov = s.metadata["dataset_provenance"]
    assert s.metadata["dataset_md5"] is None and s.metadata["hyperparameters"]["dp_secret_seed"] == "withheld"
    assert prov["content_md5"] is None and prov["fingerprint"] is None and prov["bytes"] is None and prov["size"] == 28
    assert s.metadata["privacy"]["iterations"] == 0 and s.metadata["privacy"]["epsilon_spent"] == 0.0
