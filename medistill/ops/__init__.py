"""medistill's torch ops: fast kernels with pure-PyTorch fallbacks.

This layer imports nothing else from medistill, so other projects can use the fused
augmentation and matching losses on their own. ``medistill.ops.reference`` holds the
pure-PyTorch reference of every op.
"""
from . import reference
from ._extension import build_info, has_cuda_kernels, has_ops
from .augment import DSAugment
from .channel_normalize import channel_normalize
from .cuda_graph import capture_cuda_graph
from .distribution_match import distribution_match_loss
from .dsa import dsa
from .dsa_params import DSAParams, sample_dsa_params
from .gradient_match import gradient_match_loss, gradient_match_loss_batched
from .norm_relu_pool import norm_relu_pool
from .trajectory_match import trajectory_match_loss

__all__ = [
    "reference", "build_info", "has_ops", "has_cuda_kernels", "capture_cuda_graph", "channel_normalize",
    "norm_relu_pool", "dsa", "DSAParams", "sample_dsa_params", "DSAugment",
    "gradient_match_loss", "gradient_match_loss_batched", "distribution_match_loss", "trajectory_match_loss",
]
