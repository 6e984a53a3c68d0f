"""The privacy accountant of DP-DM: Opacus's Rényi-DP accountant of the Poisson-subsampled Gaussian mechanism.

Each DP-DM iteration is one subsampled Gaussian mechanism with sample rate q and noise multiplier σ (the
noise's std over the L2 sensitivity, which is the clip norm C), so T iterations are the history
``[(σ, q, T)]`` that DP-SGD accountants take. Opacus is an optional dependency (``pip install
'medistill[dp]'``); it is imported here only, on first use.
"""
from __future__ import annotations

import math

ACCOUNTANT = "opacus.accountants.RDPAccountant"
INSTALL_HINT = "differentially private distillation needs Opacus: pip install 'medistill[dp]'"
# Rényi orders: Opacus's defaults (1.1 … 10.9, 12 … 63) extended to 255, so that short runs at large ε, whose
# best order lies above 63, are not loosened (Opacus warns "Optimal order is the largest alpha" there).
ALPHAS = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 256)))


class MissingAccountant(ImportError, ValueError):
    """Opacus is not installed (a ValueError too, so the command line prints it as one line)."""


def _opacus():
    try:
        import opacus
        from opacus.accountants import RDPAccountant
        from opacus.accountants.utils import get_noise_multiplier
    except ImportError:
        raise MissingAccountant(INSTALL_HINT) from None
    return opacus, RDPAccountant, get_noise_multiplier


def accountant_version() -> str:
    """'opacus <version>' of the installed accountant."""
    return f"opacus {_opacus()[0].__version__}"


def epsilon_spent(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """ε after ``steps`` subsampled Gaussian mechanisms (σ = ``noise_multiplier``, Poisson rate ``sample_rate``)
    at ``delta``, by Opacus's RDPAccountant; 0 for 0 steps."""
    if steps == 0:
        return 0.0
    _, rdp, _ = _opacus()
    accountant = rdp()
    accountant.history = [(float(noise_multiplier), float(sample_rate), int(steps))]
    return float(accountant.get_epsilon(delta=delta, alphas=ALPHAS))


def solve_noise_multiplier(epsilon: float, delta: float, sample_rate: float, steps: int,
                           tolerance: float = 0.01) -> float:
    """The smallest σ (to ``tolerance`` in ε) whose ε after ``steps`` iterations at ``delta`` is ≤ ``epsilon``:
    Opacus's ``get_noise_multiplier`` with its RDP accountant. ValueError when no σ ≤ 10⁶ reaches ``epsilon``."""
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise ValueError(f"dp_epsilon must be a finite number above 0, got {epsilon!r}")
    _, _, solve = _opacus()
    try:
        return float(solve(target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate, steps=steps,
                           accountant="rdp", epsilon_tolerance=tolerance, alphas=ALPHAS))
    except ValueError as exc:
        raise ValueError(f"no noise level reaches ε = {epsilon:g} at δ = {delta:g} over {steps} iterations at sample "
                         f"rate {sample_rate:g} ({exc}); raise dp_epsilon or lower the iterations") from None


__all__ = ["ACCOUNTANT", "ALPHAS", "INSTALL_HINT", "MissingAccountant", "accountant_version", "epsilon_spent",
           "solve_noise_multiplier"]
