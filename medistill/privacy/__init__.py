"""Differential privacy for distillation (DP-DM, docs/privacy.md): the settings, the accountant, the mechanism.

Below ``methods`` in the layering: imports torch and, lazily, Opacus (the optional extra ``medistill[dp]``);
nothing else of medistill.
"""
from .accountant import ACCOUNTANT, accountant_version, epsilon_spent, solve_noise_multiplier
from .mechanism import clip_rows, clipped_sum, noisy_mean, poisson_mask, private_generators
from .record import privacy_line
from .settings import (DEFAULT_CLIP, DP_SETTINGS, DPSettings, check_dp_config, default_delta, default_sample_rate,
                       is_private)

__all__ = ["ACCOUNTANT", "DEFAULT_CLIP", "DP_SETTINGS", "DPSettings", "accountant_version", "check_dp_config",
           "clip_rows", "clipped_sum", "default_delta", "default_sample_rate", "epsilon_spent", "is_private",
           "noisy_mean", "poisson_mask", "privacy_line", "private_generators", "solve_noise_multiplier"]
