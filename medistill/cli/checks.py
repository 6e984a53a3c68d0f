"""Flags checked before any work (the device asked for, counts), and the notices printed while a command runs."""
from __future__ import annotations

import sys
import warnings

import torch


def _check_device(value: str) -> None:
    """ValueError (one line: what was asked, what this machine has) unless ``value`` names a usable device."""
    if torch.cuda.is_available():
        names = ", ".join(f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count()))
        here = f"this machine has cpu and {names}"
    elif torch.version.cuda is None:
        here = "this machine has cpu only (this torch build has no CUDA support)"
    else:
        here = f"this machine has cpu only (torch built with CUDA {torch.version.cuda} finds no NVIDIA GPU or driver)"
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {value!r} is not a device: use cpu, cuda or cuda:N; {here}") from None
    if device.type == "cpu":
        return
    if device.type != "cuda":
        raise ValueError(f"--device {value}: medistill runs on cpu or cuda, not {device.type}; {here}")
    if not torch.cuda.is_available():
        raise ValueError(f"--device {value}: no CUDA device is usable; {here}: use --device cpu")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {value}: no such GPU; {here}")


# Counts the commands take, checked before any work: flag → (destination, smallest value).
_COUNT_FLAGS = {"--models": ("models", 1), "--epochs": ("epochs", 1), "--subsets": ("subsets", 1),
                "--ipc": ("ipc", 1), "--threads": ("threads", 1), "--eval-models": ("eval_models", 0),
                "--eval-epochs": ("eval_epochs", 1), "--random-subsets": ("random_subsets", 1),
                "--stop-after": ("stop_after", 1), "--iterations": ("iterations", 1),
                "--num-experts": ("num_experts", 1), "--size": ("size", 1)}
_COUNTED_COMMANDS = ("baseline", "evaluate", "distill", "experts")


def _check_counts(args) -> None:
    """ValueError naming the flag when a count of baseline/evaluate/distill/experts is too small (e.g. --models 0)."""
    if args.command not in _COUNTED_COMMANDS:
        return
    for flag, (dest, least) in _COUNT_FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None and value < least:
            skip = " (0: do not evaluate)" if dest == "eval_models" else ""
            raise ValueError(f"{flag} {value}: must be at least {least}{skip}")
    for flag, dest in (("--lr", "lr"), ("--dist-timeout", "dist_timeout")):
        value = getattr(args, dest, None)
        if value is not None and not (value > 0 and value != float("inf")):
            raise ValueError(f"{flag} {value}: must be a finite number above 0")



def _show_notice(command: str):
    """warnings.showwarning that prints the library's notices (a stale run-folder lock taken over) as one line."""
    from ..run_lock import StaleLockNotice

    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, StaleLockNotice):
            print(f"medistill {command}: notice: {message}", file=sys.stderr)
        else:
            original(message, category, filename, lineno, file, line)

    return show

