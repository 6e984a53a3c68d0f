"""``dsa``: differentiable Siamese augmentation (DSA) as one fused torch op.

x: (B, C, H, W) float (float32/float64 on CPU; also float16/bfloat16 on CUDA), any C, H, W, any
memory layout; params: :class:`~medistill.ops.dsa_params.DSAParams` from
:func:`~medistill.ops.dsa_params.sample_dsa_params` (B rows, or one row for a Siamese draw, which
applies to a batch of any size). Returns the augmented (B, C, H, W) batch, contiguous.
Differentiable w.r.t. x (params are constants). The op is a pure function of (x, params).

Autograd: registered in C++ (csrc/dsa_autograd.cpp), so an eager call with grad runs no Python
between the kernels. dsa is affine in x (A x + b, b from brightness), so its backward is
``dsa_backward`` (A^T g) and the backward of that is A v = dsa(v) - dsa(0): gradients of any order
are exact.
"""
import torch

from . import reference
from ._extension import has_ops, use_kernel
from .dsa_params import DSAParams, check_dsa_input


def dsa(
    x: torch.Tensor, params: DSAParams, *, align_corners: bool = False, compose_affine: bool = False
) -> torch.Tensor:
    """Augment x (B, C, H, W) with the families and parameters of ``params``; returns (B, C, H, W).

    Families run in the order colour (brightness, saturation, contrast), crop, cutout, flip, scale,
    rotate; scale and rotate resample bilinearly with zero padding (affine_grid + grid_sample
    semantics). ``align_corners``: False as in DC/DSA/DM's code, True as in MTT's.

    ``compose_affine`` (matters only when several of flip/scale/rotate apply, i.e. mode 'M'):
    False (default) applies flip, scale and rotate one after another, two bilinear resamplings,
    exactly as the published code does, so numbers match it. True composes them into one
    resampling by Flip @ Scale @ Rotate: faster (4 taps instead of 16 per pixel on CUDA) and a
    little sharper (one interpolation instead of two), but not the published numbers.
    """
    check_dsa_input(x, params)
    if use_kernel(x):
        return _DSA_OP(x, params.ints, params.floats, bool(align_corners), bool(compose_affine))
    return reference.dsa(x, params, align_corners=align_corners, compose_affine=compose_affine)


_DSA_OP = torch.ops.medistill.dsa.default if has_ops() else None  # resolved once: ~1 µs a call


if has_ops():

    def _check_params(x, ints, floats):
        torch._check(x.dim() == 4, lambda: "dsa: x must be (B, C, H, W)")
        torch._check(ints.dim() == 2 and ints.shape[1] == 6, lambda: "dsa: ints must be (P, 6)")
        torch._check(floats.dim() == 2 and floats.shape[1] == 6, lambda: "dsa: floats must be (P, 6)")
        torch._check(
            ints.shape[0] == 1 or ints.shape[0] == x.shape[0], lambda: "dsa: params batch must be 1 or match x"
        )

    @torch.library.register_fake("medistill::dsa")
    def _(x, ints, floats, align_corners, compose_affine):
        _check_params(x, ints, floats)
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    @torch.library.register_fake("medistill::dsa_backward")
    def _(grad_out, ints, floats, align_corners, compose_affine):
        _check_params(grad_out, ints, floats)
        return torch.empty_like(grad_out, memory_format=torch.contiguous_format)

    @torch.library.register_fake("medistill::dsa_sample")
    def _(offset, span, token_bits, rows, pick_family, generator):
        torch._check(offset.shape == (12,) and span.shape == (12,), lambda: "dsa_sample: offset and span must be (12,)")
        return (offset.new_empty((rows, 6), dtype=torch.int32), offset.new_empty((rows, 6)))
