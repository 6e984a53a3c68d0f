"""norm_relu_pool, forward+backward: the fused op vs the unfused reference chain
F.group_norm(x, C, weight, bias) → F.relu → F.avg_pool2d(2), for ConvNet-3 block shapes.

Run it with ``MEDISTILL_BENCH_KEEP_FREED=both`` (both sides with medistill's CPU allocator policy:
freed memory kept in the heap, as the CLI sets it) so the ratio measures the fusion, not page
faults on fresh 134 MB activations; without it both sides run with glibc's defaults. Run it in its
own pytest process: glibc cannot go back to its adaptive thresholds once the policy was set.
"""
import pytest
import torch

from benchmarks.conftest import synchronize
from medistill.ops import norm_relu_pool, reference

pytestmark = pytest.mark.usefixtures("op_allocator_policy")


@pytest.mark.parametrize("shape", [(256, 128, 32, 32), (256, 128, 16, 16), (10, 128, 32, 32)])
def test_norm_relu_pool(benchmark, impl, shape, device):
    benchmark.group = f"[{device.type}] norm_relu_pool fwd+bwd {shape}"
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g).to(device).requires_grad_(True)
    weight = (torch.rand(shape[1], generator=g) + 0.5).to(device).requires_grad_(True)
    bias = (torch.randn(shape[1], generator=g) * 0.1).to(device).requires_grad_(True)
    fn = reference.norm_relu_pool if impl == "reference" else norm_relu_pool
    grad_out = torch.randn(shape[0], shape[1], shape[2] // 2, shape[3] // 2, generator=g).to(device)

    def step():
        out = fn(x, weight, bias)
        grads = torch.autograd.grad(out, (x, weight, bias), grad_out)
        synchronize(device)
        return grads

    benchmark(step)
