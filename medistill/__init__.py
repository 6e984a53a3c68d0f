"""medistill: dataset distillation for medical images.

Layers, each importing only those below it: ``ops`` (torch ops) → ``data``, ``models`` →
``evaluate`` → ``methods`` → ``predictor`` / ``study`` → ``cli``.
"""
from .ops import build_info, has_cuda_kernels, has_ops

__version__ = "0.1.0"
__all__ = ["build_info", "has_ops", "has_cuda_kernels", "__version__"]
