"""channel_normalize, forward+backward: compiled kernel vs pure-PyTorch reference (pattern for every op)."""
import pytest
import torch

from benchmarks.conftest import synchronize
from medistill.ops import channel_normalize, reference


@pytest.mark.parametrize("shape", [(256, 3, 28, 28)])
def test_channel_normalize(benchmark, impl, shape, device):
    benchmark.group = f"[{device.type}] channel_normalize fwd+bwd {shape}"
    x = torch.randn(*shape, device=device, requires_grad=True)
    mean, std = torch.randn(shape[1], device=device), torch.rand(shape[1], device=device) + 0.5
    fn = reference.channel_normalize if impl == "reference" else channel_normalize

    def step():
        out = fn(x, mean, std)
        out.sum().backward()
        synchronize(device)
        return out

    benchmark(step)
