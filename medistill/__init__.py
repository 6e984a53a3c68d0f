"""medistill: dataset distillation for medical images.

Layers, each importing only those below it: ``ops`` (torch ops) → ``data``, ``models`` →
``evaluate`` → ``selection`` → ``methods`` → ``predictor`` / ``study`` / ``export`` / ``audit`` → ``cli``
(the table in tests/test_layers.py).
"""
from .ops import build_info, has_cuda_kernels, has_ops
from .version import __version__

__all__ = ["build_info", "has_ops", "has_cuda_kernels", "__version__"]
