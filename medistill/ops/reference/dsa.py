"""Reference of ``dsa``: differentiable Siamese augmentation, family by family, in plain torch.

Follows the published DSA code (DatasetCondensation ``DiffAugment``) family by family, with the
parameters given as :class:`~medistill.ops.dsa_params.DSAParams` instead of drawn inside, and
without its crashes (any batch size with a Siamese draw, any channel count, any memory layout).
Which families run is read from the params on the host (one synchronisation per call); a family
that only some samples get is applied with ``torch.where``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..dsa_params import CUTOUT_RATIO, FAMILIES, DSAParams, check_dsa_input

_COLOR, _CROP, _CUTOUT, _FLIP, _SCALE, _ROTATE = range(len(FAMILIES))


def _per_sample(t: torch.Tensor) -> torch.Tensor:
    return t.view(-1, 1, 1, 1)


def _brightness_saturation_contrast(x: torch.Tensor, color: torch.Tensor) -> torch.Tensor:
    brightness, saturation, contrast = (_per_sample(color[:, k]) for k in range(3))
    x = x + brightness
    x_mean = x.mean(dim=1, keepdim=True)
    x = (x - x_mean) * saturation + x_mean
    x_mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - x_mean) * contrast + x_mean


def _crop(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """out[i, j] = x[i + dy, j + dx], zero outside (pad by one, clamp indices into the pad, gather)."""
    B, C, H, W = x.shape
    rows = (torch.arange(H, device=x.device) + shift[:, 0:1] + 1).clamp(0, H + 1)  # (P, H)
    cols = (torch.arange(W, device=x.device) + shift[:, 1:2] + 1).clamp(0, W + 1)  # (P, W)
    x = F.pad(x, [1, 1, 1, 1])
    x = x.gather(2, rows.view(-1, 1, H, 1).expand(B, C, H, W + 2))
    return x.gather(3, cols.view(-1, 1, 1, W).expand(B, C, H, W))


def _cutout(x: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """Zero rows clamp(c - k // 2 + t, 0, size - 1), t < k (same for columns), k = int(0.5 * size + 0.5)."""
    _, _, H, W = x.shape
    kh, kw = int(H * CUTOUT_RATIO + 0.5), int(W * CUTOUT_RATIO + 0.5)
    top, left = centre[:, 0:1] - kh // 2, centre[:, 1:2] - kw // 2
    r, c = torch.arange(H, device=x.device), torch.arange(W, device=x.device)
    in_rows = (r >= top) & (r < top + kh)  # (P, H); clamping only folds out-of-range rows onto cut ones
    in_cols = (c >= left) & (c < left + kw)
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
    return x * keep.unsqueeze(1).to(x.dtype)


def _resample(x: torch.Tensor, linear: torch.Tensor, align_corners: bool) -> torch.Tensor:
    """grid_sample(x, affine_grid(theta)) with theta = [linear | 0], bilinear, zero padding."""
    theta = torch.cat([linear, linear.new_zeros(linear.shape[0], 2, 1)], dim=2).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=align_corners)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=align_corners)


def _scale_matrix(scale: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros_like(scale[:, 0])
    return torch.stack([torch.stack([scale[:, 0], zero], 1), torch.stack([zero, scale[:, 1]], 1)], 1)


def _rotate_matrix(angle: torch.Tensor) -> torch.Tensor:
    cos, sin = torch.cos(angle), torch.sin(angle)
    return torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)


def dsa(
    x: torch.Tensor, params: DSAParams, *, align_corners: bool = False, compose_affine: bool = False
) -> torch.Tensor:
    """Augment x (B, C, H, W) with params (P == B rows, or 1 for a Siamese draw); returns (B, C, H, W).

    Order: colour (brightness, saturation, contrast), crop, cutout, flip, scale, rotate. With
    ``compose_affine``, flip, scale and rotate are one resampling by Flip @ Scale @ Rotate for the
    samples that get scale or rotate (an exact flip for the others).
    """
    check_dsa_input(x, params, "reference.dsa")
    ints = params.ints.long()
    floats = params.floats.to(x.dtype)
    fam = ints[:, 0]
    on = ((fam[:, None] >> torch.arange(len(FAMILIES), device=fam.device)) & 1).bool()  # (P, 6)
    flip = on[:, _FLIP] & (ints[:, 5] != 0)
    geo = on[:, _SCALE] | on[:, _ROTATE]
    conditions = torch.cat([on, flip[:, None], (flip & ~geo)[:, None], geo[:, None]], dim=1)
    any_, all_ = conditions.any(0).tolist(), conditions.all(0).tolist()  # the one host sync

    def apply(k: int, fn, x: torch.Tensor) -> torch.Tensor:
        if not any_[k]:
            return x
        y = fn(x)
        return y if all_[k] else torch.where(_per_sample(conditions[:, k]), y, x)

    x = apply(_COLOR, lambda t: _brightness_saturation_contrast(t, floats[:, 0:3]), x)
    x = apply(_CROP, lambda t: _crop(t, ints[:, 1:3]), x)
    x = apply(_CUTOUT, lambda t: _cutout(t, ints[:, 3:5]), x)
    flip_k, flip_alone_k, geo_k = len(FAMILIES), len(FAMILIES) + 1, len(FAMILIES) + 2
    if not compose_affine:
        x = apply(flip_k, lambda t: t.flip(3), x)
        x = apply(_SCALE, lambda t: _resample(t, _scale_matrix(floats[:, 3:5]), align_corners), x)
        return apply(_ROTATE, lambda t: _resample(t, _rotate_matrix(floats[:, 5]), align_corners), x)
    x = apply(flip_alone_k, lambda t: t.flip(3), x)
    if not any_[geo_k]:
        return x
    one = torch.ones_like(floats[:, 3])
    scale = torch.where(on[:, _SCALE, None], floats[:, 3:5], one[:, None])
    angle = torch.where(on[:, _ROTATE], floats[:, 5], torch.zeros_like(one))
    mirror = torch.where(flip, -one, one)
    linear = _scale_matrix(scale) @ _rotate_matrix(angle)
    linear = torch.cat([linear[:, :1] * mirror[:, None, None], linear[:, 1:]], dim=1)  # Flip @ Scale @ Rotate
    return apply(geo_k, lambda t: _resample(t, linear, align_corners), x)
