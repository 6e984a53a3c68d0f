"""channel_normalize, forward+backward: compiled kernel vs pure-PyTorch reference (pattern for every op)."""
import pytest
import torch

from medistill.ops import channel_normalize, reference


@pytest.mark.parametrize("shape", [(256, 3, 28, 28)])
def test_channel_normalize(benchmark, impl, shape):
    benchmark.group = f"channel_normalize fwd+bwd {shape}"
    x = torch.randn(*shape, requires_grad=True)
    mean, std = torch.randn(shape[1]), torch.rand(shape[1]) + 0.5
    fn = reference.channel_normalize if impl == "reference" else channel_normalize

    def step():
        out = fn(x, mean, std)
        out.sum().backward()
        return out

    benchmark(step)
