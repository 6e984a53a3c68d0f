"""What one timed DSA round is, shared by bench_dsa.py and dsa_paired.py."""
from medistill.ops.dsa_params import DEFAULT_STRATEGY, FAMILIES

CALLS = {"S": 6, "S-each": len(FAMILIES), "M": 1}


def round_strategies(mode: str) -> list[tuple[str, str]]:
    """(strategy, sampler mode) of each call in one round. 'S': six mode-'S' calls, each picking a
    family at random, so rounds differ in cost with the families drawn; 'S-each': each family once
    (the expectation of a mode-'S' call, the same work every round); 'M': one call, every family."""
    if mode == "S-each":
        return [(family, "S") for family in FAMILIES]
    return [(DEFAULT_STRATEGY, mode)] * CALLS[mode]
