"""Matching losses, forward+backward: fused ops vs the per-layer / per-class reference loops.

Shapes are the real ones: ConvNet (depth 3, width 128, 3x28x28 input, 10 classes) has 14 parameter
tensors (~320k values); DC matches them per class (drop-in: one call per class), or all 10 classes
at once with the batched op on (K, ...) stacked gradients (stacking not timed);
DM matches 256 real and 10 synthetic 2048-d embeddings per class over 10 classes; MTT compares flat
parameter vectors of the same network. Gradients flow to the synthetic side only, as in DC/DM/MTT.
Run: python -m pytest benchmarks/bench_losses.py -p no:cacheprovider
The 10-class cases move ~40 MB per step, so on glibc their timings swing with whether freed memory
went back to the OS (fresh pages fault on first touch, for either implementation). For steadier
numbers run both sides with MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296.
"""
import pytest
import torch

from medistill.ops import (
    distribution_match_loss,
    gradient_match_loss,
    gradient_match_loss_batched,
    reference,
    trajectory_match_loss,
)

CHANNELS, CLASSES, WIDTH = 3, 10, 128
# CUDA cases join when a GPU is present (each step then ends with a synchronize).
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def convnet_shapes():
    block = lambda cin: [(WIDTH, cin, 3, 3), (WIDTH,), (WIDTH,), (WIDTH,)]  # noqa: E731
    return block(CHANNELS) + block(WIDTH) + block(WIDTH) + [(CLASSES, WIDTH * 16), (CLASSES,)]


def _grads(device, classes=None):
    """One class: two lists of 14 tensors. classes=K: K per-class lists each (separate tensors, as DC has them)."""
    torch.manual_seed(0)
    make = lambda: ([torch.randn(s, device=device) for s in convnet_shapes()],  # noqa: E731
                    [torch.randn(s, device=device, requires_grad=True) for s in convnet_shapes()])
    if classes is None:
        return make()
    pairs = [make() for _ in range(classes)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _stacked(per_class):
    """(K, *shape) leaves holding the same values as K per-class lists."""
    return [torch.stack([g[i].detach() for g in per_class]).requires_grad_(per_class[0][i].requires_grad)
            for i in range(len(per_class[0]))]


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


@pytest.mark.parametrize("device", DEVICES)
def test_gradient_match_one_class(benchmark, impl, device):
    benchmark.group = f"[{device}] gradient_match ours fwd+bwd, ConvNet 14 tensors, 1 class"
    real, syn = _grads(device)
    fn = reference.gradient_match_loss if impl == "reference" else gradient_match_loss

    def step():
        loss = fn(real, syn, "ours")
        torch.autograd.grad(loss, syn, allow_unused=True)  # the reference leaves 1-D tensors unused
        _sync(device)

    benchmark(step)


@pytest.mark.parametrize("device", DEVICES)
def test_gradient_match_ten_classes_drop_in(benchmark, impl, device):
    benchmark.group = f"[{device}] gradient_match ours fwd+bwd, 10 classes, per-class calls"
    real, syn = _grads(device, CLASSES)
    fn = reference.gradient_match_loss if impl == "reference" else gradient_match_loss
    leaves = [t for g in syn for t in g]

    def step():
        loss = sum(fn(real[c], syn[c], "ours") for c in range(CLASSES))
        torch.autograd.grad(loss, leaves, allow_unused=True)
        _sync(device)

    benchmark(step)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("metric", ["ours", "mse", "cos"])
def test_gradient_match_ten_classes_batched(benchmark, impl, metric, device):
    """Reference: DC's loop over classes on per-class lists; medistill: one batched op on (K, ...) tensors."""
    benchmark.group = f"[{device}] gradient_match {metric} fwd+bwd, 10 classes, batched op vs class loop"
    real, syn = _grads(device, CLASSES)
    if impl == "reference":
        leaves = [t for g in syn for t in g]

        def step():
            loss = sum(reference.gradient_match_loss(real[c], syn[c], metric) for c in range(CLASSES))
            torch.autograd.grad(loss, leaves, allow_unused=True)
            _sync(device)
    else:
        real_k, syn_k = _stacked(real), _stacked(syn)

        def step():
            loss = gradient_match_loss_batched(real_k, syn_k, metric).sum()
            torch.autograd.grad(loss, syn_k)
            _sync(device)

    benchmark(step)


@pytest.mark.parametrize("device", DEVICES)
def test_distribution_match_ten_classes(benchmark, impl, device):
    benchmark.group = f"[{device}] distribution_match fwd+bwd, 10 classes x (256 real, 10 syn) x 2048"
    torch.manual_seed(1)
    emb_real = torch.randn(CLASSES * 256, 2048, device=device)
    y_real = torch.arange(CLASSES, device=device).repeat_interleave(256)
    emb_syn = torch.randn(CLASSES * 10, 2048, device=device, requires_grad=True)
    y_syn = torch.arange(CLASSES, device=device).repeat_interleave(10)
    fn = reference.distribution_match_loss if impl == "reference" else distribution_match_loss

    def step():
        loss = fn(emb_real, y_real, emb_syn, y_syn, CLASSES)
        torch.autograd.grad(loss, emb_syn)
        _sync(device)

    benchmark(step)


@pytest.mark.parametrize("device", DEVICES)
def test_trajectory_match(benchmark, impl, device):
    n = sum(torch.Size(s).numel() for s in convnet_shapes())
    benchmark.group = f"[{device}] trajectory_match fwd+bwd, {n} parameters"
    torch.manual_seed(2)
    w_student = torch.randn(n, device=device, requires_grad=True)
    w_target, w_start = torch.randn(n, device=device), torch.randn(n, device=device)
    fn = reference.trajectory_match_loss if impl == "reference" else trajectory_match_loss

    def step():
        loss = fn(w_student, w_target, w_start)
        torch.autograd.grad(loss, w_student)
        _sync(device)

    benchmark(step)
