"""``DSAugment``: differentiable Siamese augmentation as a drop-in ``nn.Module``.

    aug = DSAugment("color_crop_cutout_flip_scale_rotate", mode="S", siamese=True, generator=g)
    params = aug.sample(1, 28, 28, device)            # one Siamese draw ...
    real_aug, syn_aug = aug(real, params), aug(syn, params)   # ... replayed on two batches
"""
from __future__ import annotations

import torch
from torch import nn

from .dsa import dsa
from .dsa_params import DEFAULT_STRATEGY, DSAParams, parse_strategy, sample_dsa_params


class DSAugment(nn.Module):
    """Augments (B, C, H, W) batches with DSA; samples fresh params per call unless given some.

    strategy: families joined by '_' (subset of ``color_crop_cutout_flip_scale_rotate``; 'none':
    identity). mode: 'S' one family per call, 'M' all in order. siamese: one set of params for
    every sample (and for every batch it is replayed on). generator: the only source of
    randomness (None: torch's default generator of the sampling device). align_corners /
    compose_affine: see :func:`medistill.ops.dsa`.
    """

    def __init__(
        self,
        strategy: str = DEFAULT_STRATEGY,
        mode: str = "S",
        siamese: bool = False,
        align_corners: bool = False,
        generator: torch.Generator | None = None,
        compose_affine: bool = False,
    ):
        super().__init__()
        self.tokens = parse_strategy(strategy, mode)  # fails early on a bad strategy or mode
        self.strategy, self.mode, self.siamese = strategy, mode, bool(siamese)
        self.align_corners, self.compose_affine = bool(align_corners), bool(compose_affine)
        self.generator = generator

    def sample(self, batch_size: int, height: int, width: int, device: torch.device | str = "cpu") -> DSAParams:
        """Draw params for a batch (one row when Siamese), to replay on one or several batches."""
        return sample_dsa_params(
            batch_size, height, width, strategy=self.strategy, mode=self.mode, siamese=self.siamese,
            generator=self.generator, device=device,
        )

    def forward(self, x: torch.Tensor, params: DSAParams | None = None) -> torch.Tensor:
        """x: (B, C, H, W) -> augmented (B, C, H, W); draws params when ``params`` is None."""
        if params is None:
            if not self.tokens:
                return x
            if x.dim() != 4:
                raise ValueError(f"DSAugment: x must be (B, C, H, W), got shape {tuple(x.shape)}")
            params = self.sample(x.shape[0], x.shape[2], x.shape[3], x.device)
        return dsa(x, params, align_corners=self.align_corners, compose_affine=self.compose_affine)

    def extra_repr(self) -> str:
        return (
            f"strategy={self.strategy!r}, mode={self.mode!r}, siamese={self.siamese}, "
            f"align_corners={self.align_corners}, compose_affine={self.compose_affine}"
        )
