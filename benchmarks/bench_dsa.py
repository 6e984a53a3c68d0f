"""DSA, parameter sampling + forward + backward: fused op vs pure-PyTorch reference.

Each round draws fresh params (``sample_dsa_params``, the same sampler for both implementations)
and runs forward + backward on x. Mode 'S' picks a random family per call, so a round is
``CALLS['S']`` calls (one seeded generator per case, the same seed for both implementations) to
time a mix of families rather than whichever one a single draw picks; 'S-each' is mode 'S' with
each family once per round (its expected cost, with no round-to-round change in the mix); mode
'M' is one call (every family, exact sequential flip/scale/rotate as published). Both
implementations run the same fixed number of rounds from the same seed, so they time the same
draws (benchmarks/dsa_paired.py times them round by round instead). Run:

    python -m pytest benchmarks/bench_dsa.py -p no:cacheprovider
    MEDISTILL_BENCH_DEVICE=cuda python -m pytest benchmarks/bench_dsa.py -p no:cacheprovider

On a GPU each call is microseconds of kernels inside tens of microseconds of host work (Python,
dispatch, the autograd engine), so ``test_dsa_cuda_graph`` also times medistill's calls captured
as ONE CUDA graph (sampling from a registered generator, the op, the autograd backward; replayed)
against the same eager reference. The reference itself cannot be captured: it reads which
families are on back to the host (one sync per call). Its group name says so.
"""
import pytest
import torch

from benchmarks.conftest import synchronize
from benchmarks.dsa_rounds import CALLS, round_strategies
from medistill.ops import capture_cuda_graph, dsa, reference, sample_dsa_params

ROUNDS = {10: 200, 256: 60}


# Each call allocates its (B, C, H, W) output and gradient, which glibc maps and page-faults afresh
# once the freed heap top is trimmed: MEDISTILL_BENCH_KEEP_FREED=both shows the CLI's policy.
pytestmark = pytest.mark.usefixtures("op_allocator_policy")


@pytest.mark.parametrize("mode", ["S", "S-each", "M"])
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

    calls_of_round = round_strategies(mode)

    def step():
        for strategy, sampler_mode in calls_of_round:
            params = sample_dsa_params(batch, H, W, strategy=strategy, mode=sampler_mode, generator=gen, device=device)
            out = fn(x, params)
            torch.autograd.grad(out, x, grad_out)
        synchronize(device)

    # A fixed number of rounds from the same seed: both implementations time the same sequence of
    # draws (in mode 'S', the same families in the same rounds), not whatever mix their own round
    # count happened to reach.
    benchmark.pedantic(step, rounds=ROUNDS[batch], warmup_rounds=2, iterations=1)


@pytest.mark.parametrize("mode", ["S", "M"])
@pytest.mark.parametrize("shape", [(3, 28, 28)], ids=["3x28x28"])
@pytest.mark.parametrize("batch", [256])
def test_dsa_cuda_graph(benchmark, impl, batch, shape, mode, device):
    if device.type != "cuda":
        pytest.skip("CUDA graphs need MEDISTILL_BENCH_DEVICE=cuda")
    C, H, W = shape
    calls = CALLS[mode]
    benchmark.group = (f"[cuda] dsa {mode} sample+fwd+bwd x{calls} {batch}x{C}x{H}x{W}, "
                       "medistill replayed as one CUDA graph vs eager reference")
    x = torch.randn(batch, C, H, W, generator=torch.Generator().manual_seed(0)).to(device).requires_grad_(True)
    grad_out = torch.randn(batch, C, H, W, generator=torch.Generator().manual_seed(1)).to(device)
    gen = torch.Generator(device=device).manual_seed(2)
    fn = reference.dsa if impl == "reference" else dsa

    def calls_once():
        for _ in range(calls):
            params = sample_dsa_params(batch, H, W, mode=mode, generator=gen, device=device)
            torch.autograd.grad(fn(x, params), x, grad_out)

    if impl == "reference":
        def step():
            calls_once()
            synchronize(device)
    else:
        graph, _ = capture_cuda_graph(calls_once, generator=gen, warmup=3)

        def step():
            graph.replay()
            synchronize(device)

    benchmark(step)
