"""Class-parallel distillation and parallel experts on torch.distributed (2 Gloo ranks on CPU, real data).

Every multi-process case is a real launch — torchrun, or two processes given RANK/WORLD_SIZE/MASTER_*
by hand — with a hard subprocess timeout, and compares what the ranks wrote with the one-process
result of the same seed.
"""
import os
import socket
import subprocess
import sys
import time

import pytest
import torch

from medistill.cli import main
from medistill.data import ImageSet
from medistill.distributed import DistContext, class_shard, expert_shard
from medistill.methods import ExpertConfig, build_experts, distill, make_config, make_method

LAUNCH_TIMEOUT = 600  # seconds; a hung job fails the test instead of the suite (a loaded 2-core machine needs minutes)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MEDISTILL_TEST_FAIL")}
    return {**env, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **extra}


def _torchrun(nproc: int, args: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-addr",
           "127.0.0.1", "--master-port", str(_free_port()), "-m", "medistill", *args]
    out = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def _by_hand(rank_args: list[list[str]], **env) -> list[tuple[int, str, float]]:
    """Start one process per rank with torchrun's variables set by hand; (returncode, stderr, seconds) per rank."""
    port, world = _free_port(), len(rank_args)
    started = time.time()
    procs = [subprocess.Popen([sys.executable, "-m", "medistill", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=_env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(world),
                                                  MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), **env))
             for r, args in enumerate(rank_args)]
    results = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=LAUNCH_TIMEOUT)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"a rank was still running after {LAUNCH_TIMEOUT} s")
        results.append((p.returncode, err, time.time() - started))
    return results


@pytest.fixture
def one_thread():
    """The in-process reference runs on one thread like each rank (--threads 1): DSA amplifies the last-bit
    differences of a 2-thread reduction to ~1e-2 within two iterations; with equal threads DC/DSA match exactly."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _distill_args(data_root, dataset, method, out, *extra) -> list[str]:
    return ["distill", "--dataset", dataset, "--data-root", str(data_root), "--method", method, "--preset", "quick",
            "--eval-models", "0", "--threads", "1", "--out", str(out), *extra]


def test_sharding_rules():
    assert [list(class_shard(5, r, 2)) for r in range(2)] == [[0, 1], [2, 3, 4]]
    assert [list(class_shard(2, r, 2)) for r in range(2)] == [[0], [1]]
    assert [list(class_shard(5, r, 1)) for r in range(1)] == [[0, 1, 2, 3, 4]]
    assert expert_shard(5, 1, 2) == [1, 3] and expert_shard(5, 0, 2) == [0, 2, 4]
    with pytest.raises(ValueError, match="3 processes for 2 classes.*at most 2"):
        class_shard(2, 0, 3)


def test_rank_holds_only_its_classes(retina):
    cfg = make_config("dm", 2, "quick", batch_real=8)
    whole = make_method("dm", retina, cfg)
    second = make_method("dm", retina, cfg, dist=DistContext(rank=1, world_size=2))
    assert list(second.classes) == [2, 3, 4] and second.images.shape == (6, 3, 28, 28)
    # Initial images come from per-class streams, so a rank's block equals the same rows of the whole set.
    assert torch.equal(second.images, whole.images[4:])


@pytest.mark.parametrize("method", ["dc", "dsa"])
def test_gradient_matching_two_ranks_equal_one_process(retina, data_root, tmp_path, one_thread, method):
    """RetinaMNIST's 5 classes split 2/3; IPC 2 = two outer steps with an inner-loop network update between
    them, before which the set is all-gathered."""
    _torchrun(2, _distill_args(data_root, "retinamnist", method, tmp_path / "two", "--ipc", "2", "--iterations", "1",
                               "--set", "batch_real=16", "--set", "inner_loop=2"))
    overrides = dict(iterations=1, batch_real=16, inner_loop=2)
    distill(retina, method, make_config(method, 2, "quick", **overrides), tmp_path / "one", progress=False)
    two, one = ImageSet.load(tmp_path / "two"), ImageSet.load(tmp_path / "one")
    torch.testing.assert_close(two.images, one.images, rtol=1e-4, atol=1e-5)
    assert two.metadata["distributed"] == {"world_size": 2, "class_sharding": "contiguous"}


def test_dm_two_ranks_checkpoint_resumes_in_one_process(retina, data_root, tmp_path, one_thread):
    """Two ranks stop after 2 of 3 iterations; their gathered checkpoint (images, momentum, every class's
    generator) equals the one-process checkpoint and resumes in one process to the one-process result."""
    args = ["--ipc", "2", "--iterations", "3", "--set", "batch_real=16", "--set", "log_every=1",
            "--set", "checkpoint_every=2"]
    _torchrun(2, _distill_args(data_root, "retinamnist", "dm", tmp_path / "two", *args, "--stop-after", "2"))
    cfg = make_config("dm", 2, "quick", iterations=3, batch_real=16, log_every=1, checkpoint_every=2)
    distill(retina, "dm", cfg, tmp_path / "one", progress=False, stop_after=2)
    two = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=False)
    one = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=False)
    torch.testing.assert_close(two["method"]["images"], one["method"]["images"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(two["method"]["optimizer"]["state"][0]["momentum_buffer"],
                               one["method"]["optimizer"]["state"][0]["momentum_buffer"], rtol=1e-4, atol=1e-5)
    for a, b in zip(two["method"]["class_generators"], one["method"]["class_generators"]):
        assert torch.equal(a, b)
    torch.testing.assert_close(torch.tensor(two["losses"]), torch.tensor(one["losses"]), rtol=1e-4, atol=1e-5)
    distill(retina, "dm", cfg, tmp_path / "two", resume=True, progress=False)
    distill(retina, "dm", cfg, tmp_path / "one", resume=True, progress=False)
    torch.testing.assert_close(ImageSet.load(tmp_path / "two").images, ImageSet.load(tmp_path / "one").images,
                               rtol=1e-4, atol=1e-5)


def test_experts_two_ranks_equal_one_process(breast, data_root, tmp_path, one_thread):
    _torchrun(2, ["experts", "--dataset", "breastmnist", "--data-root", str(data_root), "--num-experts", "2",
                  "--epochs", "1", "--threads", "1", "--out", str(tmp_path / "two")])
    build_experts(breast, ExpertConfig(num_experts=2, epochs=1), tmp_path / "one")
    names = sorted(p.name for p in (tmp_path / "two").iterdir())
    assert names == ["expert_000.pt", "expert_001.pt", "manifest.json"]  # one file each, no stray temp files
    assert (tmp_path / "two" / "manifest.json").read_text() == (tmp_path / "one" / "manifest.json").read_text()
    for name in names[:2]:
        assert torch.equal(torch.load(tmp_path / "two" / name), torch.load(tmp_path / "one" / name)), name


def test_more_ranks_than_classes_is_a_clear_error(data_root, tmp_path, monkeypatch, capsys):
    # Checked from the environment before any rendezvous, so one process sees it at once.
    for k, v in dict(RANK="0", WORLD_SIZE="3", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT="1").items():
        monkeypatch.setenv(k, v)
    assert main(_distill_args(data_root, "breastmnist", "dm", tmp_path / "x", "--ipc", "1")) == 2
    assert "3 processes for 2 classes" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_ranks_with_different_configurations_stop(data_root, tmp_path):
    base = _distill_args(data_root, "breastmnist", "dm", tmp_path / "run", "--ipc", "1", "--iterations", "2",
                         "--dist-timeout", "60")
    results = _by_hand([base + ["--seed", "0"], base + ["--seed", "1"]])
    for code, err, _ in results:
        assert code == 2, err[-2000:]
        assert "rank 1's run configuration differs from rank 0's" in err and "'seed': (0, 1)" in err, err[-2000:]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("mode", ["exit", "hang"])
def test_a_dead_or_hung_rank_stops_the_others(data_root, tmp_path, mode):
    """Rank 1 dies abruptly (or hangs) after iteration 1; rank 0 stops at its next collective with an error
    naming the failed step, within --dist-timeout, instead of waiting forever."""
    timeout = 5
    args = _distill_args(data_root, "breastmnist", "dm", tmp_path / "run", "--ipc", "1", "--iterations", "50",
                         "--set", "batch_real=8", "--set", "log_every=1", "--dist-timeout", str(timeout))
    if mode == "hang":
        port = _free_port()
        started = time.time()
        procs = [subprocess.Popen([sys.executable, "-m", "medistill", *args], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True,
                                  env=_env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                                           MASTER_PORT=str(port), MEDISTILL_TEST_FAIL="1:1:hang"))
                 for r in range(2)]
        try:
            _, err = procs[0].communicate(timeout=LAUNCH_TIMEOUT)
        finally:
            procs[1].kill()
            procs[1].communicate()
        code, seconds = procs[0].returncode, time.time() - started
    else:
        [(code, err, seconds), (code1, _, _)] = _by_hand([args, args], MEDISTILL_TEST_FAIL="1:1:exit")
        assert code1 == 3
    assert code == 2, err[-2000:]
    assert "rank 0 of 2: summing the losses over ranks failed" in err, err[-2000:]
    assert seconds < LAUNCH_TIMEOUT
    assert not (tmp_path / "run" / "synthetic_set.pt").exists()


def test_mtt_refuses_class_parallel(breast, tmp_path):
    cfg = make_config("mtt", 1, "quick", expert_dir=str(tmp_path / "no-bank-needed"))
    with pytest.raises(ValueError, match="MTT is not class-parallel"):
        make_method("mtt", breast, cfg, dist=DistContext(rank=0, world_size=2))
