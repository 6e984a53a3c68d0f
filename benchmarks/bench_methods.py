"""End to end: one iteration of each method, medistill vs a faithful reimplementation of the published loop.

Generated data shaped like the published measurements (ConvNet-3, 10 classes, 1×28×28, 256 real
images per class; MTT at IPC 10 with 20 synthetic steps), one thread. Both sides draw from the
same kind of seeded generator and use the same hyperparameters; they differ in how the work is
shaped (batched classes, no autograd graph for real embeddings, fused DSA and losses) and in the
CPU stack medistill's CLI sets up: its ConvNet pools with strided adds where the published network
has ``nn.AvgPool2d`` (``published_loops.as_published``), and it keeps freed memory in the heap
(``medistill.cpu_allocator``) where the published scripts run with glibc's defaults.
``MEDISTILL_BENCH_KEEP_FREED=both`` gives both sides the allocator policy (to see what it alone is
worth), ``none`` neither. On CUDA the CLI turns on ``torch.backends.cudnn.benchmark``; so does this
file for the medistill side (``MEDISTILL_BENCH_CUDNN_BENCHMARK=both`` / ``none`` as above).
``MEDISTILL_BENCH_CLASS_BATCHING`` (loop / vmap / auto, the default) sets DC/DSA's ``class_batching``.
``MEDISTILL_BENCH_ROUNDS=N`` times N rounds per case instead of 2–3 (a GPU step takes milliseconds).
"""
import json
import os

import pytest
import torch

from benchmarks import published_loops
from benchmarks.conftest import synchronize
from benchmarks.generated_classes import CLASSES, generated_classes
from medistill.cpu_allocator import keep_freed_memory
from medistill.methods import make_config, make_method
from medistill.models import build_model

KEEP_FREED = os.environ.get("MEDISTILL_BENCH_KEEP_FREED", "medistill")
CUDNN_BENCHMARK = os.environ.get("MEDISTILL_BENCH_CUDNN_BENCHMARK", "medistill")
CLASS_BATCHING = os.environ.get("MEDISTILL_BENCH_CLASS_BATCHING", "auto")
ROUNDS = int(os.environ.get("MEDISTILL_BENCH_ROUNDS", "0"))


def rounds(default: int) -> int:
    return ROUNDS or default


@pytest.fixture(autouse=True)
def cli_settings(impl):
    """medistill's CLI settings for the medistill side: the allocator policy and cuDNN autotuning (see
    the module doc). glibc cannot return to its adaptive thresholds once the policy was set, so a side
    that runs after it in the same process gets glibc's static defaults instead: for the default CPU
    comparison run the sides in separate processes (``-k reference`` / ``-k medistill``)."""
    keep = KEEP_FREED == "both" or (KEEP_FREED == "medistill" and impl == "medistill")
    if keep:
        keep_freed_memory(True)
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = CUDNN_BENCHMARK == "both" or (CUDNN_BENCHMARK == "medistill" and impl == "medistill")
    yield
    torch.backends.cudnn.benchmark = saved
    if keep:
        keep_freed_memory(False)


@pytest.fixture(scope="module")
def generated():
    return generated_classes()


@pytest.fixture(scope="module")
def expert_bank(generated, tmp_path_factory):
    """A bank with one random trajectory: its values do not change the cost of an iteration."""
    folder = tmp_path_factory.mktemp("bank")
    net = build_model("convnet", 1, CLASSES, 28)
    p = sum(t.numel() for t in net.parameters())
    manifest = {"dataset": generated.name, "dataset_md5": generated.md5, "model": "convnet", "epochs": 4,
                "param_count": p, "align_corners": True}  # as `medistill experts` trains (the published MTT)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    torch.save(torch.randn(5, p, generator=torch.Generator().manual_seed(1)) * 0.01, folder / "expert_000.pt")
    return folder


def dm_step(impl, method):
    """One DM iteration: medistill's, or the published loop on the same method state."""
    return method.step if impl == "medistill" else (lambda: published_loops.dm_iteration(method))


def dc_outer_step(impl, method):
    """One DC/DSA outer step on a fresh network (the published network for the reference side)."""
    net = method.sample_network()
    if impl == "reference":
        published_loops.as_published(net)
    params = list(net.parameters())
    if impl == "medistill":
        return lambda: method.outer_step(net, params)
    return lambda: published_loops.dc_outer_step(method, net)


def test_dm_iteration(benchmark, impl, generated, device):
    benchmark.group = f"[{device.type}] DM iteration (10 classes, 256 real/class, IPC 10)"
    method = make_method("dm", generated, make_config("dm", 10, batch_real=256), device=str(device))
    step = dm_step(impl, method)

    def run():
        step()
        synchronize(device)

    benchmark.pedantic(run, rounds=rounds(3), warmup_rounds=1)


@pytest.mark.parametrize("name", ["dc", "dsa"])
def test_dc_outer_step(benchmark, impl, generated, device, name):
    benchmark.group = f"[{device.type}] {name.upper()} outer step (10 classes, 256 real/class, IPC 10)"
    method = make_method(name, generated, make_config(name, 10, batch_real=256, class_batching=CLASS_BATCHING),
                         device=str(device))
    step = dc_outer_step(impl, method)

    def run():
        step()
        synchronize(device)

    benchmark.pedantic(run, rounds=rounds(2), warmup_rounds=1)


def test_mtt_iteration(benchmark, impl, generated, expert_bank, device):
    benchmark.group = f"[{device.type}] MTT iteration (10 classes, IPC 10, 20 synthetic steps)"
    cfg = make_config("mtt", 10, expert_dir=str(expert_bank), syn_steps=20, expert_epochs=2, max_start_epoch=2,
                      zca=False)  # the generated bank is unwhitened; ZCA does not change the cost of a step
    method = make_method("mtt", generated, cfg, device=str(device))
    if impl == "reference":
        published_loops.as_published(method.student)
    step = method.step if impl == "medistill" else (lambda: published_loops.mtt_iteration(method))

    def run():
        step()
        synchronize(device)

    benchmark.pedantic(run, rounds=rounds(1), warmup_rounds=1)


@pytest.mark.parametrize("name", ["dm", "dc"])
def test_bf16_autocast(benchmark, impl, generated, device, name):
    """CUDA only: medistill with ``amp=bf16`` (network passes under bf16 autocast) against the
    published float32 loop: a DM iteration, or a DC outer step."""
    if device.type != "cuda":
        pytest.skip("bf16 autocast is a CUDA option (on this CPU it is slower than float32)")
    what = "DM iteration" if name == "dm" else "DC outer step"
    benchmark.group = f"[cuda] {what} (10 classes, 256 real/class, IPC 10), medistill amp=bf16 vs published float32"
    amp = "bf16" if impl == "medistill" else "off"
    overrides = {"class_batching": CLASS_BATCHING} if name == "dc" else {}
    method = make_method(name, generated, make_config(name, 10, batch_real=256, amp=amp, **overrides),
                         device=str(device))
    step = dm_step(impl, method) if name == "dm" else dc_outer_step(impl, method)

    def run():
        step()
        synchronize(device)

    benchmark.pedantic(run, rounds=rounds(3), warmup_rounds=1)
