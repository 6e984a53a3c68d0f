"""Pure-PyTorch references of every medistill op.

Each function here computes exactly what the compiled op computes, with plain torch code. They are
the fallback when ``medistill._C`` is absent and the oracle the tests compare the kernels against.
"""
from .channel_normalize import channel_normalize
from .dsa import dsa
from .matching_losses import (
    distribution_match_loss,
    gradient_match_loss,
    gradient_match_loss_batched,
    trajectory_match_loss,
)
from .norm_relu_pool import norm_relu_pool

__all__ = [
    "channel_normalize", "dsa", "norm_relu_pool",
    "gradient_match_loss", "gradient_match_loss_batched", "distribution_match_loss", "trajectory_match_loss",
]
