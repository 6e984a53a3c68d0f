"""The build's smallest op end to end: kernel vs reference, autograd, opcheck, fake, compile, CUDA."""
import pytest
import torch

from medistill.ops import channel_normalize, has_ops, reference
from tests.conftest import requires_cuda, tolerances

needs_ops = pytest.mark.skipif(not has_ops(), reason="medistill._C not built")


def make(dtype, shape=(4, 3, 8, 8), device="cpu", contiguous=True):
    x = torch.randn(*shape, dtype=dtype, device=device)
    if not contiguous:
        x = x.transpose(2, 3)
    mean = torch.randn(shape[1], dtype=dtype, device=device)
    std = torch.rand(shape[1], dtype=dtype, device=device) + 0.5
    return x, mean, std


@needs_ops
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("shape", [(4, 3, 8, 8), (1, 1, 28, 28), (0, 3, 4, 4)])
def test_kernel_matches_reference(dtype, contiguous, shape):
    x, mean, std = make(dtype, shape, contiguous=contiguous)
    x.requires_grad_(True)
    out = channel_normalize(x, mean, std)
    expected = reference.channel_normalize(x, mean, std)
    torch.testing.assert_close(out, expected, **tolerances(dtype))
    if x.numel():
        g = torch.randn_like(out)
        (got,) = torch.autograd.grad(out, x, g)
        (want,) = torch.autograd.grad(expected, x, g)
        torch.testing.assert_close(got, want, **tolerances(dtype))


@needs_ops
def test_gradcheck_float64():
    x, mean, std = make(torch.float64, (2, 3, 5, 5))
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: channel_normalize(t, mean, std), (x,))


@needs_ops
def test_opcheck():
    x, mean, std = make(torch.float32)
    torch.library.opcheck(torch.ops.medistill.channel_normalize.default, (x, mean, std))
    x.requires_grad_(True)
    torch.library.opcheck(torch.ops.medistill.channel_normalize.default, (x, mean, std))


@needs_ops
def test_compile_fullgraph():
    x, mean, std = make(torch.float32)
    compiled = torch.compile(lambda t: channel_normalize(t, mean, std) * 2, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), reference.channel_normalize(x, mean, std) * 2)


@needs_ops
def test_bad_input_names_problem():
    x, mean, std = make(torch.float32)
    with pytest.raises(RuntimeError, match="one value per channel"):
        torch.ops.medistill.channel_normalize(x, mean[:2], std)
    with pytest.raises(RuntimeError, match="floating-point"):
        torch.ops.medistill.channel_normalize(x.long(), mean, std)


@requires_cuda
@needs_ops
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_matches_cpu(dtype):
    x, mean, std = make(torch.float32)
    out_cpu = channel_normalize(x, mean, std)
    out_cuda = channel_normalize(x.cuda().to(dtype), mean.cuda(), std.cuda())
    torch.testing.assert_close(out_cuda.float().cpu(), out_cpu, **tolerances(dtype))
