"""Loads the compiled extension ``medistill._C`` once and says why when it cannot.

Everything in :mod:`medistill.ops` asks :func:`has_ops` before calling ``torch.ops.medistill``;
without the extension each op falls back to its pure-PyTorch reference.
"""
from __future__ import annotations

import importlib
from typing import Any

import torch

_loaded = False
_error: str | None = None


def _load() -> None:
    global _loaded, _error
    try:
        importlib.import_module("medistill._C")
        _loaded = True
    except Exception as exc:  # ImportError, or an undefined symbol from a torch mismatch
        _loaded = False
        _error = (
            f"medistill._C could not be loaded ({type(exc).__name__}: {exc}). "
            f"Runtime: torch {torch.__version__}, CUDA {torch.version.cuda}; "
            f"built against: {_build_config_summary()}. "
            "Rebuild with `pip install --no-build-isolation --no-deps -e .`; "
            "until then every op runs its pure-PyTorch reference."
        )


def _build_config() -> Any:
    try:
        return importlib.import_module("medistill._build_config")
    except ImportError:
        return None


def _build_config_summary() -> str:
    cfg = _build_config()
    if cfg is None:
        return "unknown (no build record: the package was never built here)"
    return f"torch {cfg.TORCH_VERSION}, CUDA {cfg.TORCH_CUDA_VERSION}"


def has_ops() -> bool:
    """True when the compiled kernels are loaded (else the references run)."""
    return _loaded


def has_cuda_kernels() -> bool:
    """True when the loaded extension carries CUDA kernels (compiled, whether or not a GPU is present)."""
    return _loaded and torch._C._dispatch_has_kernel_for_dispatch_key("medistill::channel_normalize", "CUDA")


def build_info() -> dict:
    """What was built, against which torch/CUDA, and why anything is missing."""
    cfg = _build_config()
    return {
        "ops_loaded": _loaded,
        "load_error": _error,
        "cpu_kernels": _loaded,
        "cuda_kernels_compiled": has_cuda_kernels(),
        "cuda_decision": getattr(cfg, "CUDA_DECISION", None),
        "cuda_arch_list": getattr(cfg, "TORCH_CUDA_ARCH_LIST", None),
        "built_with_torch": getattr(cfg, "TORCH_VERSION", None),
        "built_with_cuda": getattr(cfg, "TORCH_CUDA_VERSION", None),
        "runtime_torch": torch.__version__,
        "runtime_cuda": torch.version.cuda,
        "cuda_device_available": torch.cuda.is_available(),
    }


def use_kernel(*tensors: torch.Tensor) -> bool:
    """Whether the compiled op can serve these tensors' device."""
    if not _loaded:
        return False
    device_type = tensors[0].device.type
    if device_type == "cpu":
        return True
    if device_type == "cuda":
        return has_cuda_kernels()
    return False


_load()
