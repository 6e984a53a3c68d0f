"""One network, re-drawn in place each iteration: the values a freshly built one would get, without
building one.

DM draws a fresh random network every iteration. Building it (module construction, parameter
allocation, one host→device copy per tensor) is host work that a GPU step waits on: on an H200 a DM
iteration is host-bound (BENCHMARKS.md). :class:`NetworkRefresher` keeps one network on the device
and a CPU twin; each call re-draws the twin with :func:`medistill.models.reset_parameters` from
the given generator (the same draws, in the same order, as ``build_model(..., generator=)``) and
moves every floating-point tensor in one copy (from pinned memory on CUDA, so it does not wait).
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from ..models import reset_parameters


class NetworkRefresher:
    """``refresher(generator)`` → the network (the same module every call), freshly initialised."""

    def __init__(self, build: Callable[[], nn.Module], device: torch.device):
        self.device = torch.device(device)
        self.template = build()  # CPU; its values are re-drawn on every call
        self.net = copy.deepcopy(self.template).to(self.device)
        self._pairs = list(zip(self.template.state_dict().values(), self.net.state_dict().values()))
        self._float_pairs = [(s, d) for s, d in self._pairs if s.is_floating_point()]
        self._other_pairs = [(s, d) for s, d in self._pairs if not s.is_floating_point()]

    @torch.no_grad()
    def __call__(self, generator: torch.Generator) -> nn.Module:
        reset_parameters(self.template, generator)
        for p in self.net.parameters():
            p.grad = None
        if self.device.type == "cpu":
            for src, dst in self._pairs:
                dst.copy_(src)
            return self.net
        flat = torch.cat([src.reshape(-1) for src, _ in self._float_pairs])
        flat = flat.pin_memory().to(self.device, non_blocking=True)  # the pinned block is kept until the copy ends
        views = [v.view_as(dst) for v, (_, dst) in zip(flat.split([d.numel() for _, d in self._float_pairs]),
                                                        self._float_pairs)]
        torch._foreach_copy_([dst for _, dst in self._float_pairs], views)
        for src, dst in self._other_pairs:
            dst.copy_(src)
        return self.net
