"""DP-DM's settings (fields of :class:`~medistill.methods.DMConfig`), their defaults and checks.

``dp_epsilon`` None: not private. ``dp_delta`` None: 1/(10·N), N the training images. ``dp_clip`` None:
:data:`DEFAULT_CLIP`. ``dp_sample_rate`` None: q = min(1, K·batch_real/N), so a class's expected batch
q·N_c is about ``batch_real`` on balanced data. ``dp_secret_seed`` None: the private stream's seed is drawn
from the operating system (``secrets``) at the start of the run and kept only in the checkpoint.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

DP_SETTINGS = ("dp_epsilon", "dp_delta", "dp_clip", "dp_sample_rate", "dp_secret_seed")
# The per-example clip norm C of the 2048-d ConvNet embedding. A fixed number, not measured on the data being
# protected (that would leak). Random ConvNets at 28 px give embeddings of norm 24–27 (measured on BreastMNIST
# and a brain MRI folder), so C = 20 clips every embedding: each image then contributes its direction at norm C.
DEFAULT_CLIP = 20.0


def is_private(config) -> bool:
    return getattr(config, "dp_epsilon", None) is not None


def default_delta(num_train: int) -> float:
    """δ = 1/(10·N): below the 1/N at which releasing one whole record becomes allowed."""
    return 1.0 / (10 * num_train)


def default_sample_rate(batch_real: int, num_classes: int, num_train: int) -> float:
    """q = min(1, K·batch_real/N): the expected batch over all classes equals DM's K·batch_real."""
    return min(1.0, num_classes * batch_real / num_train)


def check_dp_config(config) -> None:
    """ValueError (one line) for DP settings out of range, DP settings without dp_epsilon, or init=real under DP."""
    eps = getattr(config, "dp_epsilon", None)
    given = [k for k in DP_SETTINGS[1:] if getattr(config, k, None) is not None]
    if eps is None:
        if given:
            raise ValueError(f"{', '.join(given)} given without dp_epsilon (--dp-epsilon E): the run would not be "
                             "private; give a privacy budget")
        return
    if not (eps > 0 and math.isfinite(eps)):
        raise ValueError(f"dp_epsilon must be a finite number above 0, got {eps!r} (a non-private run with the same "
                         "noise initialisation: drop --dp-epsilon and pass --set init=noise)")
    delta = config.dp_delta
    if delta is not None and not 0 < delta < 1:
        raise ValueError(f"dp_delta must be in (0, 1), got {delta!r}")
    clip = config.dp_clip
    if clip is not None and not (clip > 0 and math.isfinite(clip)):
        raise ValueError(f"dp_clip must be a finite number above 0, got {clip!r}")
    rate = config.dp_sample_rate
    if rate is not None and not 0 < rate <= 1:
        raise ValueError(f"dp_sample_rate must be in (0, 1], got {rate!r}")
    if config.init != "noise":
        raise ValueError("differentially private DM starts from noise: init=real would put real training images "
                         "into the set; drop --set init=real (the DP default is init=noise)")


@dataclass(frozen=True)
class DPSettings:
    """The resolved mechanism of one run: ε, δ, C, q, T, σ and the public class sizes it assumes."""

    epsilon: float
    delta: float
    clip: float
    sample_rate: float
    iterations: int
    noise_multiplier: float
    class_sizes: tuple[int, ...]
    delta_rule: str
    sample_rate_rule: str

    def expected_count(self, c: int) -> float:
        """q·N_c: the public stand-in for class c's sampled count (the denominator of its noisy mean)."""
        return self.sample_rate * self.class_sizes[c]


__all__ = ["DEFAULT_CLIP", "DP_SETTINGS", "DPSettings", "check_dp_config", "default_delta", "default_sample_rate",
           "is_private"]
