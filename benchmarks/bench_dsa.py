"""DSA, parameter sampling + forward + backward: fused op vs pure-PyTorch reference.

Each round draws fresh params (``sample_dsa_params``, the same sampler for both implementations)
and runs forward + backward on x. Mode 'S' picks a random family per call, so a round is
``CALLS['S']`` calls (one seeded generator per case, the same seed for both implementations) to
time a mix of families rather than whichever one a single draw picks; mode 'M' is one call
(every family, exact sequential flip/scale/rotate as published). Run:

    python -m pytest benchmarks/bench_dsa.py -p no:cacheprovider
    MEDISTILL_BENCH_DEVICE=cuda python -m pytest benchmarks/bench_dsa.py -p no:cacheprovider
"""
import pytest
import torch

from benchmarks.conftest import synchronize
from medistill.ops import dsa, reference, sample_dsa_params

CALLS = {"S": 6, "M": 1}


@pytest.mark.parametrize("mode", ["S", "M"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 28, 28)], ids=["1x28x28", "3x28x28"])
@pytest.mark.parametrize("batch", [10, 256])
def test_dsa(benchmark, impl, batch, shape, mode, device):
    C, H, W = shape
    calls = CALLS[mode]
    benchmark.group = f"[{device.type}] dsa {mode} sample+fwd+bwd x{calls} {batch}x{C}x{H}x{W}"
    x = torch.randn(batch, C, H, W, generator=torch.Generator().manual_seed(0)).to(device).requires_grad_(True)
    grad_out = torch.randn(batch, C, H, W, generator=torch.Generator().manual_seed(1)).to(device)
    gen = torch.Generator(device=device).manual_seed(2)  # sampling on the device: no host round-trip
    fn = reference.dsa if impl == "reference" else dsa

    def step():
        for _ in range(calls):
            params = sample_dsa_params(batch, H, W, mode=mode, generator=gen, device=device)
            out = fn(x, params)
            torch.autograd.grad(out, x, grad_out)
        synchronize(device)

    benchmark(step)
