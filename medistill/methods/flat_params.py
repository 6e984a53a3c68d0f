"""Running a network from one flat parameter vector (what MTT's trajectories store)."""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call


def flatten_parameters(model: nn.Module) -> torch.Tensor:
    """(P,) concatenation of ``model.parameters()`` in registration order."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def unflatten(model: nn.Module, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    """Views of ``flat`` shaped like the model's parameters, keyed by name (keeps autograd)."""
    out, offset = {}, 0
    for name, p in model.named_parameters():
        n = p.numel()
        out[name] = flat[offset : offset + n].view_as(p)
        offset += n
    if offset != flat.numel():
        raise ValueError(f"flat vector has {flat.numel()} values, the model {offset}")
    return out


def forward_flat(model: nn.Module, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """model(x) with parameters taken from ``flat`` (P,)."""
    return functional_call(model, unflatten(model, flat), (x,))
