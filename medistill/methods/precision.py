"""Mixed precision for the methods' network passes (the ``amp`` setting).

``amp="off"``: everything float32. ``amp="bf16"``: the network forward passes inside a method's step
(DC/DSA class gradients and inner-loop training, DM embeddings, MTT's unrolled student steps) run under
``torch.autocast(device_type, dtype=torch.bfloat16)``. The synthetic images, their optimiser, the
learned learning rate and every loss stay float32: callers cast network outputs to float32 before the
cross-entropy and medistill's matching-loss ops. Evaluation (:mod:`medistill.evaluate`) never uses it.

bf16 autocast is meant for CUDA (tensor cores); on a CPU it runs but is slower than float32 here, so
it warns once per process.
"""
from __future__ import annotations

import contextlib
import warnings

import torch

AMP_MODES = ("off", "bf16")
_warned_cpu = False


def check_amp(mode: str) -> str:
    """``mode`` if it is a known amp setting, else ValueError naming the choices."""
    if mode not in AMP_MODES:
        raise ValueError(f"amp must be one of {', '.join(repr(m) for m in AMP_MODES)}, got {mode!r} "
                         "(--set amp=bf16 for bf16 autocast of the network passes on CUDA)")
    return mode


def warn_if_cpu(mode: str, device) -> None:
    """Warn once per process when bf16 autocast is asked for on a CPU device."""
    global _warned_cpu
    if check_amp(mode) == "bf16" and torch.device(device).type == "cpu" and not _warned_cpu:
        _warned_cpu = True
        warnings.warn("amp='bf16' is meant for CUDA; on a CPU bf16 autocast runs but is usually slower than "
                      "float32 (set amp=off)", stacklevel=3)


def network_autocast(mode: str, device) -> contextlib.AbstractContextManager:
    """The context for a network forward pass: bf16 autocast on ``device``'s type, or a no-op for 'off'."""
    if check_amp(mode) == "off":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


__all__ = ["AMP_MODES", "check_amp", "network_autocast", "warn_if_cpu"]
