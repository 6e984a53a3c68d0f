"""The privacy guarantee as people read it: one line from the record a DP run writes (docs/privacy.md)."""
from __future__ import annotations


def privacy_line(record: dict) -> str:
    """'(ε, δ)-DP …' from a run's privacy record (config.json ``privacy``, the set's metadata ``privacy``)."""
    return (f"differential privacy: (ε = {record['epsilon_spent']:.3g}, δ = {record['delta']:.3g})-DP for "
            f"{record['adjacency']} (target ε {record['epsilon']:g}); σ = {record['noise_multiplier']:.4g}, "
            f"q = {record['sample_rate']:.4g}, C = {record['clip']:g}, {record['iterations']} iterations; "
            f"{record['accountant']} ({record['accountant_version']}); class sizes treated as public")


__all__ = ["privacy_line"]
