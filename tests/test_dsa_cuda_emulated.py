"""DSA's CUDA kernels run on the host (tests/cuda_emulation/): csrc/cuda/dsa_kernels.cuh compiled
with host versions of the CUDA builtins it uses, each CUDA thread a std::thread, against the CPU
kernel, forward and backward.

GPUs are lent to few sessions, so this is where the CPU test suite checks what the shared per-pixel
math cannot: the kernels' indexing, their synchronisation between phases (block reductions, zeroing
before the atomics, the in-place colour adjoint), a grid smaller than the batch, and outputs that
start as garbage. It does not model the GPU's memory ordering or its speed; tests/test_dsa.py's
CUDA tests do, on a GPU.
"""
from pathlib import Path

import pytest
import torch

from medistill.ops import has_ops, sample_dsa_params
from medistill.ops.dsa_params import FAMILIES

ROOT = Path(__file__).resolve().parents[1]
ALL = "_".join(FAMILIES)
TOL = {
    torch.float64: dict(atol=1e-9, rtol=1e-9),
    torch.float32: dict(atol=2e-4, rtol=1e-4),  # the CPU kernel resamples separably / per row
    torch.float16: dict(atol=2e-2, rtol=1e-2),  # the CPU kernel in float32 on the same rounded inputs
}

pytestmark = pytest.mark.skipif(not has_ops(), reason="medistill._C not built (the CPU kernel is the oracle)")


@pytest.fixture(scope="module")
def kernels_on_host():
    from torch.utils.cpp_extension import load

    build = ROOT / "build" / "cuda_emulation"
    build.mkdir(parents=True, exist_ok=True)
    return load(
        name="dsa_kernels_on_host",
        sources=[str(ROOT / "tests" / "cuda_emulation" / "dsa_kernels_on_host.cpp")],
        extra_include_paths=[str(ROOT / "csrc"), str(ROOT / "tests" / "cuda_emulation")],
        extra_cflags=["-O1", "-std=c++20"],
        build_directory=str(build),
    )


CASES = [  # (B, C, H, W), family ('M': all, 'M-composed': all in one resampling), siamese, align_corners
    ((5, 1, 17, 23), "color", False, False),
    ((5, 1, 17, 23), "rotate", False, True),
    ((4, 3, 28, 28), "M", False, False),
    ((4, 3, 28, 28), "M-composed", True, False),
    ((3, 5, 32, 32), "M", True, True),
    ((3, 5, 32, 32), "scale", False, False),
    ((4, 3, 28, 28), "crop", False, False),
    ((1, 3, 20, 12), "M", False, True),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("shape,family,siamese,align", CASES, ids=lambda v: str(v))
def test_cuda_kernels_on_host_match_the_cpu_kernel(kernels_on_host, shape, family, siamese, align, dtype):
    B, C, H, W = shape
    strategy = ALL if family.startswith("M") else family
    gen = torch.Generator().manual_seed(B * 1000 + C * 100 + H)
    params = sample_dsa_params(1 if siamese else B, H, W, strategy=strategy, mode="M", siamese=siamese, generator=gen)
    compose = family == "M-composed"
    x = torch.randn(B, C, H, W, generator=gen, dtype=torch.float64).to(dtype)
    g = torch.randn(B, C, H, W, generator=gen, dtype=torch.float64).to(dtype)
    oracle = torch.float64 if dtype == torch.float64 else torch.float32
    want = torch.ops.medistill.dsa(x.to(oracle), params.ints, params.floats, align, compose)
    want_grad = torch.ops.medistill.dsa_backward(g.to(oracle), params.ints, params.floats, align, compose)
    blocks = min(B, 3)  # fewer blocks than samples where B > 3: blocks stride over the batch
    got = kernels_on_host.forward(x, params.ints, params.floats, align, compose, blocks)
    got_grad = kernels_on_host.backward(g, params.ints, params.floats, align, compose, blocks)
    torch.testing.assert_close(got.to(oracle), want, **TOL[dtype])
    torch.testing.assert_close(got_grad.to(oracle), want_grad, **TOL[dtype])
