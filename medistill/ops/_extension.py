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


_module: Any = None


def _load() -> None:
    global _loaded, _error, _module
    cfg = _build_config()
    if cfg is not None and getattr(cfg, "EXTENSION_BUILT", True) is False:
        # A pure-Python install (MEDISTILL_EXT=0): no kernels by choice. A stale medistill._C left
        # from an earlier build in the same tree is not loaded.
        _loaded = False
        _error = (
            f"medistill._C is not built ({cfg.EXTENSION_DECISION}): every op runs its pure-PyTorch "
            "reference. To compile the kernels, reinstall without MEDISTILL_EXT=0: "
            "`pip install --no-build-isolation --no-deps .` (needs a C++ compiler and torch)."
        )
        return
    try:
        _module = importlib.import_module("medistill._C")
        _loaded = True
    except Exception as exc:  # ImportError, or an undefined symbol from a torch mismatch
        _loaded = False
        built = getattr(cfg, "TORCH_VERSION", None)
        mismatch = (
            f"The build's torch ({built}) differs from the runtime torch ({torch.__version__}): "
            "an extension runs only with the torch it was compiled against. "
            if built is not None and built != torch.__version__ else ""
        )
        _error = (
            f"medistill._C could not be loaded ({type(exc).__name__}: {exc}). "
            f"Runtime: torch {torch.__version__}, CUDA {torch.version.cuda}; "
            f"built against: {_build_config_summary()}. {mismatch}"
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
    """What was built, against which torch/CUDA, and why anything is missing.

    ``load_error`` says why the kernels are not loaded (not built: MEDISTILL_EXT=0; or a failed
    load); ``cpu_simd``: the CPU code the loaded kernels run on this machine (x86 AVX2+FMA, or the
    portable path, e.g. with MEDISTILL_SIMD=off), ``cpu_simd_build`` and ``openmp``: what setup.py
    decided.
    """
    cfg = _build_config()
    return {
        "ops_loaded": _loaded,
        "load_error": _error,
        "extension_built": getattr(cfg, "EXTENSION_BUILT", None),
        "extension_decision": getattr(cfg, "EXTENSION_DECISION", None),
        "cpu_kernels": _loaded,
        "cpu_simd": getattr(_module, "CPU_SIMD", None),
        "cpu_simd_build": getattr(cfg, "CPU_SIMD", None),
        "openmp": getattr(cfg, "OPENMP", None),
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
