"""DSA as the methods use it, over the fused op of :mod:`medistill.ops`.

* Siamese (DSA and DM synthesis): one draw shared by a class's real batch and its synthetic batch,
  every sample of both getting the parameters of sample 0. Drawn from the class's own generator
  (``generator=``), so a class's draws do not depend on which other classes a process holds.
* Unseeded (network training in DC's inner loop, MTT): every sample its own parameters, drawn from
  the shared generator.
Mode 'S' throughout: each call picks one family.
"""
from __future__ import annotations

import torch

from ..ops import dsa, sample_dsa_params


class DSAPair:
    def __init__(self, strategy: str, align_corners: bool, generator: torch.Generator):
        self.strategy = strategy
        self.align_corners = align_corners
        self.generator = generator

    def siamese(self, *batches: torch.Tensor, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """The same augmentation (family and parameters) applied to each (B_i, C, H, W) batch.

        ``generator``: where the draw comes from (default: the pair's generator)."""
        h, w = batches[0].shape[-2:]
        params = sample_dsa_params(1, h, w, strategy=self.strategy, mode="S", siamese=True,
                                   generator=self.generator if generator is None else generator,
                                   device=batches[0].device)
        return [dsa(x, params, align_corners=self.align_corners) for x in batches]

    def independent(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample parameters (one family for the call): (B, C, H, W) → (B, C, H, W)."""
        params = sample_dsa_params(x.shape[0], x.shape[-2], x.shape[-1], strategy=self.strategy, mode="S",
                                   siamese=False, generator=self.generator, device=x.device)
        return dsa(x, params, align_corners=self.align_corners)
