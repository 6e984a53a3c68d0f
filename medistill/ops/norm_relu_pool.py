"""``norm_relu_pool``: instance norm → ReLU → 2×2 average pool as one torch op (one ConvNet block after its conv).

x: (B, C, H, W) float (float32/float64 on CPU; also float16/bfloat16 on CUDA), H, W ≥ 2, any
memory layout; weight, bias: (C,). Returns avg_pool2d(relu(group_norm(x, C, weight, bias, eps)), 2)
of shape (B, C, H//2, W//2), contiguous. The op reads x once and writes a quarter of it; the
registered op also returns the per-plane mean and rstd (B, C) that its backward op takes (the
backward recomputes the ReLU mask from x, nothing else is saved). Differentiable w.r.t. x, weight
and bias, to any order.

Autograd: in eager mode with grad the wrapper goes through ``_NormReluPoolFunction``. Its backward
calls the fast backward op, except when the backward itself is being differentiated
(``create_graph=True``, as DC's synthetic gradients and MTT's unrolled steps are): then it recomputes
the unfused chain (the reference, pooled by strided adds on CPU) from the saved (x, weight, bias) and
differentiates that with ``create_graph=True``, which is correct to any order.
``torch.library.register_autograd`` on the op (direct op calls, ``opcheck``, ``torch.compile``)
always calls the backward op: first order only.
"""
import torch
import torch.nn.functional as F

from . import reference
from ._extension import has_ops, use_kernel


def norm_relu_pool(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """avg_pool2d(relu(group_norm(x, C, weight, bias, eps)), 2): (B, C, H, W) → (B, C, H//2, W//2)."""
    if x.dim() != 4:
        raise ValueError(f"norm_relu_pool: x must be (B, C, H, W), got shape {tuple(x.shape)}")
    if use_kernel(x):
        eps = float(eps)
        wants_grad = x.requires_grad or weight.requires_grad or bias.requires_grad
        if wants_grad and torch.is_grad_enabled() and not torch.compiler.is_compiling():
            return _NormReluPoolFunction.apply(x, weight, bias, eps)
        return torch.ops.medistill.norm_relu_pool.default(x, weight, bias, eps)[0]
    return reference.norm_relu_pool(x, weight, bias, eps)


def _differentiable_chain(x, weight, bias, eps):
    """The reference chain as ATen ops, differentiable to any order: (B, C, H, W) → (B, C, H//2, W//2).
    Half/bfloat16 input (the fused op under CUDA autocast) is normalised in float32, as autocast does.

    On CPU the 2×2 pool is two strided adds (as medistill.models.convnet.AvgPool2x2, which this layer
    cannot import): ATen's NCHW avg_pool2d and its backward are the slowest steps of the chain there.
    """
    if x.dtype in (torch.float16, torch.bfloat16):  # as autocast runs group_norm (and the fused op's stats)
        y = F.relu(F.group_norm(x.float(), x.shape[1], weight.float(), bias.float(), eps)).to(x.dtype)
    else:
        y = F.relu(F.group_norm(x, x.shape[1], weight, bias, eps))
    if y.device.type != "cpu":
        return F.avg_pool2d(y, 2)
    h, w = y.shape[-2] // 2 * 2, y.shape[-1] // 2 * 2
    rows = y[..., 0:h:2, :w] + y[..., 1:h:2, :w]
    return (rows[..., 0::2] + rows[..., 1::2]) * 0.25


class _NormReluPoolFunction(torch.autograd.Function):
    """Eager autograd around medistill::norm_relu_pool / norm_relu_pool_backward (see module doc)."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        out, mean, rstd = torch.ops.medistill.norm_relu_pool.default(x, weight, bias, eps)
        ctx.save_for_backward(x, weight, bias, mean, rstd)
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, bias, mean, rstd = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: differentiate the reference, to any order
            wanted = [t for t, need in zip((x, weight, bias), ctx.needs_input_grad[:3]) if need]
            out = _differentiable_chain(x, weight, bias, ctx.eps)
            grads = iter(torch.autograd.grad(out, wanted, grad_out, create_graph=True))
            return (*(next(grads) if need else None for need in ctx.needs_input_grad[:3]), None)
        grad_x, grad_weight, grad_bias = torch.ops.medistill.norm_relu_pool_backward.default(
            grad_out, x, weight, bias, mean, rstd)
        return grad_x, grad_weight, grad_bias, None


if has_ops():

    def _stat_dtype(x):
        return torch.float64 if x.dtype == torch.float64 else torch.float32

    def _check(x, weight, bias):
        torch._check(x.dim() == 4, lambda: "norm_relu_pool: x must be (B, C, H, W)")
        torch._check(weight.shape == (x.shape[1],), lambda: "norm_relu_pool: weight must have shape (C,)")
        torch._check(bias.shape == (x.shape[1],), lambda: "norm_relu_pool: bias must have shape (C,)")
        torch._check(x.shape[2] >= 2 and x.shape[3] >= 2, lambda: "norm_relu_pool: H and W must be at least 2")

    @torch.library.register_fake("medistill::norm_relu_pool")
    def _(x, weight, bias, eps):
        _check(x, weight, bias)
        b, c, h, w = x.shape
        stats = dict(dtype=_stat_dtype(x), device=x.device)
        return x.new_empty((b, c, h // 2, w // 2)), x.new_empty((b, c), **stats), x.new_empty((b, c), **stats)

    @torch.library.register_fake("medistill::norm_relu_pool_backward")
    def _(grad_out, x, weight, bias, mean, rstd):
        _check(x, weight, bias)
        return (x.new_empty(x.shape), weight.new_empty(weight.shape), bias.new_empty(bias.shape))

    def _setup_context(ctx, inputs, output):
        x, weight, bias, _ = inputs
        _, mean, rstd = output
        ctx.save_for_backward(x, weight, bias, mean, rstd)
        ctx.mark_non_differentiable(mean, rstd)

    def _backward(ctx, grad_out, _grad_mean, _grad_rstd):
        x, weight, bias, mean, rstd = ctx.saved_tensors
        grad_x, grad_weight, grad_bias = torch.ops.medistill.norm_relu_pool_backward.default(
            grad_out, x, weight, bias, mean, rstd)
        return grad_x, grad_weight, grad_bias, None

    torch.library.register_autograd("medistill::norm_relu_pool", _backward, setup_context=_setup_context)
