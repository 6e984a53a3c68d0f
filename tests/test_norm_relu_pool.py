"""norm_relu_pool (instance norm → ReLU → 2×2 avg pool): kernel vs reference, autograd to second order,
opcheck, fake, compile, bad input, CUDA."""
import pytest
import torch
import torch.nn.functional as F

from medistill.ops import has_ops, norm_relu_pool, reference
from tests.conftest import requires_cuda, tolerances

needs_ops = pytest.mark.skipif(not has_ops(), reason="medistill._C not built")


def oracle(x, weight, bias, eps=1e-5):
    """The unfused chain ConvNet runs: GroupNorm(C, C) → ReLU → AvgPool2d(2)."""
    return F.avg_pool2d(F.relu(F.group_norm(x, x.shape[1], weight, bias, eps)), 2)


def make(dtype, shape, device="cpu", layout="contiguous"):
    g = torch.Generator().manual_seed(sum(shape))
    x = (torch.randn(*shape, generator=g, dtype=dtype) * 2 + 0.5).to(device)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "transposed":  # a non-contiguous view with the same values
        x = x.transpose(2, 3).contiguous().transpose(2, 3)
    sign = torch.where(torch.arange(shape[1]) % 3 == 2, -1.0, 1.0).to(dtype)  # |weight| ≥ 0.5, some negative
    weight = ((torch.rand(shape[1], generator=g, dtype=dtype) + 0.5) * sign).to(device)
    bias = (torch.randn(shape[1], generator=g, dtype=dtype) * 0.3).to(device)
    return x, weight, bias


def grad_tolerances(dtype):
    # grad_weight / grad_bias sum B·H·W terms: looser absolute tolerance in float32.
    return dict(atol=2e-4, rtol=2e-4) if dtype == torch.float32 else tolerances(dtype)


def forward_and_grads(fn, x, weight, bias, grad_out=None):
    x, weight, bias = (t.detach().requires_grad_(True) for t in (x, weight, bias))
    out = fn(x, weight, bias)
    if grad_out is None:
        grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(7), dtype=out.dtype).to(out.device)
    return (out, *torch.autograd.grad(out, (x, weight, bias), grad_out)), grad_out


@needs_ops
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (4, 128, 32, 32), (3, 2, 5, 7), (2, 1, 6, 6), (1, 4, 2, 3)])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "transposed"])
def test_kernel_matches_reference(dtype, shape, layout):
    x, weight, bias = make(dtype, shape, layout=layout)
    got, grad_out = forward_and_grads(norm_relu_pool, x, weight, bias)
    want, _ = forward_and_grads(oracle, x, weight, bias, grad_out)
    assert got[0].shape == (shape[0], shape[1], shape[2] // 2, shape[3] // 2)
    y = F.group_norm(x, shape[1], weight, bias)
    assert (y < 0).any() and (y > 0).any()  # the ReLU mask is exercised
    torch.testing.assert_close(got[0], want[0], **tolerances(dtype))
    for name, a, b in zip(("grad_x", "grad_weight", "grad_bias"), got[1:], want[1:]):
        torch.testing.assert_close(a, b, **grad_tolerances(dtype), msg=lambda m: f"{name}: {m}")


@needs_ops
def test_reference_and_recompute_chain_are_the_unfused_chain():
    from medistill.ops.norm_relu_pool import _differentiable_chain

    x, weight, bias = make(torch.float64, (2, 3, 7, 6))
    torch.testing.assert_close(reference.norm_relu_pool(x, weight, bias), oracle(x, weight, bias))
    torch.testing.assert_close(_differentiable_chain(x, weight, bias, 1e-5), oracle(x, weight, bias))


@needs_ops
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_saved_statistics(dtype):
    x, weight, bias = make(dtype, (3, 4, 6, 5))
    out, mean, rstd = torch.ops.medistill.norm_relu_pool(x, weight, bias, 1e-5)
    assert mean.dtype == rstd.dtype == dtype and mean.shape == rstd.shape == (3, 4)
    torch.testing.assert_close(mean, x.mean((2, 3)), **tolerances(dtype))
    torch.testing.assert_close(rstd, (x.var((2, 3), unbiased=False) + 1e-5).rsqrt(), **tolerances(dtype))


@needs_ops
def test_eps_is_used():
    x, weight, bias = make(torch.float64, (2, 3, 4, 4))
    x = x * 1e-3  # variance ~ eps, so eps matters
    torch.testing.assert_close(norm_relu_pool(x, weight, bias, eps=0.1), oracle(x, weight, bias, eps=0.1))
    assert not torch.allclose(norm_relu_pool(x, weight, bias, eps=0.1), norm_relu_pool(x, weight, bias))


@needs_ops
def test_non_finite_input_propagates_like_the_reference():
    """A NaN or inf in a plane makes that plane's outputs NaN, as in GroupNorm → ReLU → pool (ReLU keeps NaN)."""
    x, weight, bias = make(torch.float32, (2, 3, 4, 4))
    x[0, 1, 2, 3] = float("nan")
    x[1, 2, 0, 0] = float("inf")
    got, want = norm_relu_pool(x, weight, bias), oracle(x, weight, bias)
    assert got[0, 1].isnan().all() and got[1, 2].isnan().all()
    torch.testing.assert_close(got, want, equal_nan=True)


@needs_ops
def test_empty_batch():
    x, weight, bias = make(torch.float32, (0, 3, 4, 4))
    assert norm_relu_pool(x, weight, bias).shape == (0, 3, 2, 2)


@needs_ops
def test_gradcheck_and_gradgradcheck_float64():
    x, weight, bias = make(torch.float64, (2, 2, 5, 4))
    inputs = tuple(t.requires_grad_(True) for t in (x, weight, bias))
    assert torch.autograd.gradcheck(norm_relu_pool, inputs)
    assert torch.autograd.gradgradcheck(norm_relu_pool, inputs)
    # The registered autograd (opcheck / compile path) is first-order correct too.
    assert torch.autograd.gradcheck(lambda *t: torch.ops.medistill.norm_relu_pool(*t, 1e-5)[0], inputs)


@needs_ops
@pytest.mark.parametrize("requires", [(True, True, True), (True, False, False), (False, True, True)])
def test_fast_backward_equals_recompute_backward(requires):
    """The backward op (create_graph=False) and the reference recompute (create_graph=True) agree."""
    x, weight, bias = make(torch.float32, (3, 16, 12, 10))
    inputs = [t.detach().requires_grad_(r) for t, r in zip((x, weight, bias), requires)]
    wanted = [t for t in inputs if t.requires_grad]
    out = norm_relu_pool(*inputs)
    g = torch.randn_like(out)
    fast = torch.autograd.grad(out, wanted, g, retain_graph=True)
    slow = torch.autograd.grad(out, wanted, g, create_graph=True)
    assert all(s.requires_grad for s in slow)
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b.detach(), **grad_tolerances(torch.float32))


@needs_ops
def test_double_backward_matches_reference_through_a_conv():
    """DC's pattern: grad of a loss of parameter gradients (create_graph) w.r.t. the input images."""
    x, weight, bias = make(torch.float64, (2, 3, 6, 6))
    conv = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    w4 = torch.randn(4, dtype=torch.float64, requires_grad=True)
    b4 = torch.randn(4, dtype=torch.float64, requires_grad=True)

    def image_grad(fn):
        img = x.detach().requires_grad_(True)
        loss = fn(F.conv2d(img, conv, padding=1), w4, b4).pow(2).sum()
        grads = torch.autograd.grad(loss, (conv, w4, b4), create_graph=True)
        return torch.autograd.grad(sum(g.pow(2).sum() for g in grads), img)[0]

    torch.testing.assert_close(image_grad(norm_relu_pool), image_grad(oracle))


@needs_ops
def test_opcheck():
    x, weight, bias = make(torch.float32, (2, 3, 6, 7))
    torch.library.opcheck(torch.ops.medistill.norm_relu_pool.default, (x, weight, bias, 1e-5))
    inputs = tuple(t.clone().requires_grad_(True) for t in (x, weight, bias))
    torch.library.opcheck(torch.ops.medistill.norm_relu_pool.default, (*inputs, 1e-5))
    out, mean, rstd = torch.ops.medistill.norm_relu_pool(x, weight, bias, 1e-5)
    torch.library.opcheck(torch.ops.medistill.norm_relu_pool_backward.default,
                          (torch.randn_like(out), x, weight, bias, mean, rstd))


@needs_ops
def test_compile_fullgraph():
    x, weight, bias = make(torch.float32, (2, 3, 8, 8))
    compiled = torch.compile(lambda t, w, b: norm_relu_pool(t, w, b) * 2, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x, weight, bias), oracle(x, weight, bias) * 2)
    xg = x.clone().requires_grad_(True)
    compiled(xg, weight, bias).sum().backward()
    xr = x.clone().requires_grad_(True)
    (oracle(xr, weight, bias) * 2).sum().backward()
    torch.testing.assert_close(xg.grad, xr.grad, **grad_tolerances(torch.float32))


@needs_ops
def test_bad_input_names_problem():
    x, weight, bias = make(torch.float32, (2, 3, 4, 4))
    op = torch.ops.medistill.norm_relu_pool
    with pytest.raises(RuntimeError, match="norm_relu_pool: weight must have shape"):
        op(x, weight[:2], bias, 1e-5)
    with pytest.raises(RuntimeError, match="norm_relu_pool: bias must have shape"):
        op(x, weight, bias[:2], 1e-5)
    with pytest.raises(RuntimeError, match="H and W must be at least 2"):
        op(x[:, :, :1], weight, bias, 1e-5)
    with pytest.raises(RuntimeError, match="x must be a floating-point tensor"):
        op(x.long(), weight, bias, 1e-5)
    with pytest.raises(RuntimeError, match="x must have 4 dimensions"):
        op(x[0], weight, bias, 1e-5)
    out, mean, rstd = op(x, weight, bias, 1e-5)
    with pytest.raises(RuntimeError, match="grad_out must have shape"):
        torch.ops.medistill.norm_relu_pool_backward(out[:, :, :1], x, weight, bias, mean, rstd)
    with pytest.raises(ValueError, match="norm_relu_pool: x must be"):
        norm_relu_pool(x[0], weight, bias)


@requires_cuda
@needs_ops
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(4, 128, 32, 32), (3, 2, 5, 7), (2, 3, 40, 40)])
def test_cuda_matches_cpu(dtype, shape):
    cpu_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    half = dtype in (torch.float16, torch.bfloat16)
    x, weight, bias = make(cpu_dtype, shape)
    if half:  # the CPU reference sees the same rounded inputs as the half-precision kernel
        x = x.to(dtype).to(cpu_dtype)
    want, grad_out = forward_and_grads(norm_relu_pool, x, weight, bias)
    if half:
        grad_out = grad_out.to(dtype).to(cpu_dtype)
        want, _ = forward_and_grads(norm_relu_pool, x, weight, bias, grad_out)
    xc = x.cuda().to(dtype).contiguous(memory_format=torch.channels_last)
    got, _ = forward_and_grads(norm_relu_pool, xc, weight.cuda(), bias.cuda(), grad_out.cuda().to(dtype))
    tol = tolerances(dtype) if dtype in (torch.float16, torch.bfloat16) else grad_tolerances(dtype)
    torch.testing.assert_close(got[0].to(cpu_dtype).cpu(), want[0], **tol)
    if dtype in (torch.float16, torch.bfloat16):
        # A pre-activation within half-precision rounding of 0 can take the other side of the ReLU
        # kink than in float32, which moves that element's gradient by O(1): allow 0.1 % of them.
        close = torch.isclose(got[1].to(cpu_dtype).cpu(), want[1], **tol)
        assert close.float().mean() > 0.999, f"{(~close).sum()} of {close.numel()} grad_x elements differ"
    else:
        torch.testing.assert_close(got[1].to(cpu_dtype).cpu(), want[1], **tol)
    for a, b in zip(got[2:], want[2:]):  # sums over the batch and the plane (of ~4,000 terms)
        if half:  # to the sum's scale: each term is rounded to half precision on the way
            scale = b.abs().max().item()
            torch.testing.assert_close(a.to(cpu_dtype).cpu(), b, atol=2e-2 * scale, rtol=0)
        else:
            torch.testing.assert_close(a.to(cpu_dtype).cpu(), b, **tol)


@requires_cuda
@needs_ops
def test_cuda_gradgradcheck_and_opcheck():
    x, weight, bias = make(torch.float64, (2, 2, 5, 4), device="cuda")
    inputs = tuple(t.requires_grad_(True) for t in (x, weight, bias))
    assert torch.autograd.gradcheck(norm_relu_pool, inputs)
    assert torch.autograd.gradgradcheck(norm_relu_pool, inputs)
    torch.library.opcheck(torch.ops.medistill.norm_relu_pool.default, (*inputs, 1e-5))
