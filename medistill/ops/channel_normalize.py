"""``channel_normalize``: per-channel normalisation as a torch op (the build's smallest complete op).

y[b, c, h, w] = (x[b, c, h, w] - mean[c]) / std[c];  x: (B, C, H, W) float, mean/std: (C,).
Differentiable w.r.t. x.
"""
import torch

from . import reference
from ._extension import has_ops, use_kernel


def channel_normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Normalise each channel of a (B, C, H, W) batch; returns (B, C, H, W)."""
    if x.dim() != 4:
        raise ValueError(f"channel_normalize: x must be (B, C, H, W), got shape {tuple(x.shape)}")
    if use_kernel(x):
        return torch.ops.medistill.channel_normalize(x, mean, std)
    return reference.channel_normalize(x, mean, std)


if has_ops():

    @torch.library.register_fake("medistill::channel_normalize")
    def _(x, mean, std):
        torch._check(x.dim() == 4, lambda: "channel_normalize: x must be 4-D")
        torch._check(mean.shape[0] == x.shape[1], lambda: "channel_normalize: one mean per channel")
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    @torch.library.register_fake("medistill::channel_normalize_backward")
    def _(grad_out, std):
        return torch.empty_like(grad_out, memory_format=torch.contiguous_format)

    def _setup_context(ctx, inputs, output):
        _, _, std = inputs
        ctx.save_for_backward(std)

    def _backward(ctx, grad_out):
        (std,) = ctx.saved_tensors
        return torch.ops.medistill.channel_normalize_backward(grad_out, std), None, None

    torch.library.register_autograd(
        "medistill::channel_normalize", _backward, setup_context=_setup_context
    )
