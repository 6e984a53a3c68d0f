"""Each method on real BreastMNIST: it runs, reduces its own loss, repeats with a seed, resumes exactly,
and survives the published code's crash cases (IPC 1 Siamese, grayscale + crop, RGB at 28 px)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from medistill.data import ImageSet
from medistill.methods import (ExpertConfig, RunFolderError, build_experts, dc_loops, distill, make_config,
                               make_method)

TINY = dict(batch_real=16, log_every=1, checkpoint_every=2)


@pytest.fixture(scope="module")
def experts(breast, tmp_path_factory):
    folder = tmp_path_factory.mktemp("experts")
    return build_experts(breast, ExpertConfig(num_experts=1, epochs=3, seed=0), folder)


def test_dc_loop_rule():
    assert dc_loops(1) == (1, 1) and dc_loops(10) == (10, 50) and dc_loops(50) == (50, 10)
    assert dc_loops(5) == (5, 23) and dc_loops(15) == (15, 38) and dc_loops(60) == (60, 10)


def _losses(method, steps):
    return [float(method.step()) for _ in range(steps)]


def test_dm_reduces_its_loss(breast):
    method = make_method("dm", breast, make_config("dm", 2, "quick", batch_real=64, lr_img=10.0))
    losses = _losses(method, 12)
    assert sum(losses[-3:]) < sum(losses[:3])


def test_dm_network_redrawn_in_place_equals_a_fresh_one(breast):
    cfg = make_config("dm", 2, "quick", batch_real=32)
    refreshed, rebuilt = make_method("dm", breast, cfg), make_method("dm", breast, cfg)

    def fresh_network():  # what DM did before NetworkRefresher: build a new network every iteration
        net = rebuilt.sample_network()
        net.train()
        return net.requires_grad_(False)

    rebuilt.fresh_network = fresh_network
    for _ in range(3):
        assert float(refreshed.step()) == float(rebuilt.step())
    assert torch.equal(refreshed.images, rebuilt.images)


@pytest.mark.parametrize("name", ["dc", "dsa"])
def test_gradient_matching_reduces_its_loss(breast, name):
    method = make_method(name, breast, make_config(name, 1, "quick", batch_real=64))
    # The same network and real batch each step isolates the image update from resampling noise.
    state = method.generator.get_state()
    first = []
    for _ in range(6):
        method.generator.set_state(state)
        first.append(float(method.step()))
    assert first[-1] < first[0]


@pytest.mark.parametrize("name", ["dc", "dsa"])
def test_class_batched_gradients_equal_the_class_loop(breast, name):
    # BreastMNIST's training classes hold 147 and 399 images: batch_real=200 makes class 0's batch
    # shorter than class 1's, so the vmapped pass pads it and must weight the padding out.
    updates, losses = {}, {}
    for batching in ("loop", "vmap"):
        method = make_method(name, breast, make_config(name, 2, "quick", batch_real=200, class_batching=batching))
        assert method.vmap_classes == (batching == "vmap")
        before = method.images.detach().clone()
        net = method.sample_network()
        losses[batching] = float(method.outer_step(net, list(net.parameters())))
        updates[batching] = method.images.detach() - before
    assert updates["loop"].abs().max() > 1e-3  # the step moved the images
    assert losses["vmap"] == pytest.approx(losses["loop"], rel=1e-4)
    torch.testing.assert_close(updates["vmap"], updates["loop"], rtol=1e-3, atol=1e-5)


def test_class_batching_choice(breast):
    assert not make_method("dc", breast, make_config("dc", 1, "quick")).vmap_classes  # auto: the loop on CPU
    with pytest.raises(ValueError, match="unknown class_batching"):
        make_method("dc", breast, make_config("dc", 1, "quick", class_batching="fast"))
    with pytest.raises(ValueError, match="without batch norm"):
        make_method("dc", breast, make_config("dc", 1, "quick", model="convnet_bn", class_batching="vmap"))


def test_class_batching_does_not_block_resume():
    from medistill.methods.checkpoint import config_mismatch

    # the same gradients either way (rounding apart), and folders made before the setting existed
    assert config_mismatch({"lr_img": 0.1, "class_batching": "loop"}, {"lr_img": 0.1, "class_batching": "vmap"}) == {}
    assert config_mismatch({"lr_img": 0.1}, {"lr_img": 0.1, "class_batching": "auto"}) == {}
    assert config_mismatch({"lr_img": 0.1}, {"lr_img": 0.2}) == {"lr_img": (0.1, 0.2)}


def test_mtt_reduces_its_loss_and_learns_lr(breast, experts):
    cfg = make_config("mtt", 1, "quick", expert_dir=str(experts), syn_steps=3, expert_epochs=1, max_start_epoch=1,
                      lr_img=100.0, lr_lr=1e-5)
    method = make_method("mtt", breast, cfg)
    losses = _losses(method, 8)
    assert min(losses[-3:]) < losses[0]
    assert method.learned_lr() != pytest.approx(cfg.lr_teacher, rel=0, abs=0)


@pytest.mark.parametrize("name", ["dm", "dsa"])
def test_seed_repeatability(breast, name):
    cfg = make_config(name, 1, "quick", **TINY, seed=3)
    a, b = make_method(name, breast, cfg), make_method(name, breast, cfg)
    _losses(a, 2), _losses(b, 2)
    assert torch.equal(a.images, b.images)
    c = make_method(name, breast, make_config(name, 1, "quick", **TINY, seed=4))
    _losses(c, 2)
    assert not torch.equal(a.images, c.images)


@pytest.mark.parametrize("name,dataset", [("dsa", "breast"), ("dm", "breast"), ("dsa", "retina"), ("dm", "retina")])
def test_published_crash_cases(name, dataset, request):
    # IPC 1 with Siamese DSA, grayscale images through crop, RGB at 28 px through ConvNet.
    data = request.getfixturevalue(dataset)
    method = make_method(name, data, make_config(name, 1, "quick", **TINY))
    assert torch.isfinite(method.step())


def test_bad_inputs(breast):
    with pytest.raises(ValueError, match="exceeds the smallest class"):
        make_method("dm", breast, make_config("dm", 200, "quick"))
    with pytest.raises(ValueError, match="unknown method"):
        make_config("gan", 1)
    with pytest.raises(ValueError, match="unknown preset"):
        make_config("dm", 1, "fast")
    with pytest.raises(ValueError, match="unknown dm setting"):
        make_config("dm", 1, lr_imgg=1.0)
    with pytest.raises(ValueError, match="expert"):
        make_method("mtt", breast, make_config("mtt", 1, "quick"))


def test_run_folder_guard_and_outputs(breast, tmp_path):
    cfg = make_config("dm", 1, "quick", iterations=2, **TINY)
    result = distill(breast, "dm", cfg, tmp_path, progress=False)
    for name in ("config.json", "checkpoint.pt", "synthetic_set.pt", "synthetic_grid.png", "loss_curve.png",
                 "summary.txt"):
        assert (tmp_path / name).exists(), name
    assert ImageSet.load(tmp_path).images.shape == (2, 1, 28, 28)
    assert "DM on breastmnist" in result.summary
    with pytest.raises(RunFolderError, match="--resume .* --force"):
        distill(breast, "dm", cfg, tmp_path, progress=False)
    other = make_config("dm", 1, "quick", iterations=2, **{**TINY, "lr_img": 2.0})
    with pytest.raises(RunFolderError, match="different configuration.*lr_img"):
        distill(breast, "dm", other, tmp_path, resume=True, progress=False)
    distill(breast, "dm", other, tmp_path, force=True, progress=False)


def test_resume_in_process_is_bit_identical(breast, tmp_path):
    cfg = make_config("dsa", 1, "quick", iterations=5, **TINY)
    distill(breast, "dsa", cfg, tmp_path / "full", progress=False)
    distill(breast, "dsa", cfg, tmp_path / "split", progress=False, stop_after=3)  # checkpoint at 2, runs 3
    distill(breast, "dsa", cfg, tmp_path / "split", resume=True, progress=False)
    a, b = ImageSet.load(tmp_path / "full"), ImageSet.load(tmp_path / "split")
    assert torch.equal(a.images, b.images)


def test_sigkill_and_resume_equals_uninterrupted(breast, data_root, tmp_path):
    """A real SIGKILL of a distillation subprocess, then --resume, ends with the uninterrupted result."""
    args = [sys.executable, "-m", "medistill", "distill", "--dataset", "breastmnist", "--data-root", str(data_root),
            "--method", "dm", "--ipc", "1", "--preset", "quick", "--iterations", "20", "--set", "batch_real=16",
            "--set", "checkpoint_every=2", "--set", "log_every=1", "--eval-models", "0", "--threads", "1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run(args + ["--out", str(tmp_path / "whole")], check=True, env=env, capture_output=True, timeout=300)
    victim = subprocess.Popen(args + ["--out", str(tmp_path / "killed")], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    checkpoint = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.time() + 240
    while not checkpoint.exists() and time.time() < deadline and victim.poll() is None:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert not (tmp_path / "killed" / "synthetic_set.pt").exists(), "the run finished before it could be killed"
    subprocess.run(args + ["--out", str(tmp_path / "killed"), "--resume"], check=True, env=env, capture_output=True,
                   timeout=300)
    a, b = ImageSet.load(tmp_path / "whole"), ImageSet.load(tmp_path / "killed")
    assert torch.equal(a.images, b.images)


def test_metrics_and_shared_random_baseline(breast, tmp_path):
    from medistill.evaluate import EvalConfig

    eval_config = EvalConfig(num_models=1, epochs=1, seed=0)
    first = distill(breast, "dm", make_config("dm", 1, "quick", iterations=1, **TINY), tmp_path / "dm",
                    eval_config=eval_config, progress=False)
    second = distill(breast, "dsa", make_config("dsa", 1, "quick", iterations=1, **TINY), tmp_path / "dsa",
                     eval_config=eval_config, progress=False)
    assert (tmp_path / "dm" / "metrics.json").exists()
    # one cache file per random subset (R = 5 by default), shared by both runs: both are evaluated with DSA
    assert len(list((tmp_path / ".random_baselines").glob("random-breastmnist-ipc1-*.json"))) == 5
    assert first.metrics["random"] == second.metrics["random"]
    assert first.metrics["random"]["num_subsets"] == 5 and first.metrics["comparison"]["overall"]
    assert first.metrics["majority_rate"] == pytest.approx(114 / 156)
    assert "distilled acc" in first.summary


def test_divergence_stops_with_a_clear_error(breast, tmp_path):
    from medistill.methods.runner import DivergenceError

    cfg = make_config("dm", 1, "quick", iterations=4, lr_img=float("inf"), **TINY)
    with pytest.raises(DivergenceError, match="diverged.*lower lr_img"):
        distill(breast, "dm", cfg, tmp_path, progress=False)
    assert not (tmp_path / "synthetic_set.pt").exists()
