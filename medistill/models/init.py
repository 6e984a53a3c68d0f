"""Seeded parameter initialisation without touching the global RNG.

Re-draws every parameter with PyTorch's default scheme (kaiming-uniform for conv/linear weights,
uniform bias, ones/zeros for norms) from an explicit ``torch.Generator``, so a seed alone fixes
the network and nothing reseeds the process-wide RNG.
"""
from __future__ import annotations

import math

import torch
from torch import nn


@torch.no_grad()
def reset_parameters(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-initialise ``model`` in place from ``generator`` (a CPU generator); returns the model."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            w = torch.empty(module.weight.shape)
            nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=generator)
            module.weight.copy_(w)
            if module.bias is not None:
                fan_in = module.weight[0].numel()
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
                b = torch.empty(module.bias.shape).uniform_(-bound, bound, generator=generator)
                module.bias.copy_(b)
        elif isinstance(module, (nn.GroupNorm, nn.BatchNorm2d)):
            if module.weight is not None:
                module.weight.fill_(1.0)
                module.bias.zero_()
            if isinstance(module, nn.BatchNorm2d):
                module.reset_running_stats()
    return model
