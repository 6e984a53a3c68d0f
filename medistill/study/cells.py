"""The study grid: cells (dataset, method or selector, IPC, seed, budget) and their budgets.

A cell is the unit of work, of claiming and of one row in the results table. Its id names it in
file names: ``breastmnist-dm-ipc1-quick-s0`` (``-all-`` for the full training set, which has no IPC).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

DISTILL_METHODS = ("dc", "dsa", "dm", "mtt")
BASELINES = ("random", "herding", "kcenter", "full")

# Evaluation budget of each preset: networks per score, epochs per network (None: the protocol's
# 300, 1000 with DSA) and epochs for the full-training-set baseline. quick matches `medistill distill
# --preset quick` (3 networks × 300 epochs), so its run folders can be imported into a study.
PRESET_BUDGETS = {
    "quick": {"eval_models": 3, "eval_epochs": 300, "full_epochs": 300, "random_subsets": 5},
    "paper": {"eval_models": 5, "eval_epochs": None, "full_epochs": None, "random_subsets": 5},
}


@dataclass(frozen=True)
class Budget:
    """A preset plus explicit overrides (None: the preset's value). ``tag`` names it in cell ids."""

    preset: str = "quick"
    iterations: int | None = None
    eval_models: int | None = None
    eval_epochs: int | None = None
    full_epochs: int | None = None
    random_subsets: int | None = None

    def __post_init__(self):
        if self.preset not in PRESET_BUDGETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESET_BUDGETS)}")

    def resolved(self, key: str):
        value = getattr(self, key)
        return PRESET_BUDGETS[self.preset][key] if value is None else value

    @property
    def tag(self) -> str:
        """The preset name, or ``preset~<hash of the overrides>`` when any override is set."""
        overrides = {k: v for k, v in asdict(self).items() if k != "preset" and v is not None}
        if not overrides:
            return self.preset
        digest = hashlib.sha1(json.dumps(overrides, sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.preset}~{digest}"


@dataclass(frozen=True)
class Cell:
    """One unit of the study. ``ipc`` is None for the full training set."""

    dataset: str
    method: str
    ipc: int | None
    seed: int
    budget: str  # Budget.tag

    @property
    def kind(self) -> str:
        return "distilled" if self.method in DISTILL_METHODS else "baseline"

    @property
    def id(self) -> str:
        ipc = "all" if self.ipc is None else f"ipc{self.ipc}"
        return f"{self.dataset}-{self.method}-{ipc}-{self.budget}-s{self.seed}"


def check_methods(methods) -> None:
    known = DISTILL_METHODS + BASELINES
    for m in methods:
        if m not in known:
            raise ValueError(f"unknown method or baseline {m!r}; choose from {', '.join(known)}")


def grid(datasets, methods, ipcs, seeds, budget: Budget) -> list[Cell]:
    """All cells in run order: IPC, then method (in the order given), then dataset, then seed.

    ``full`` does not depend on the IPC: it appears once per (dataset, seed), after the first IPC's cells.
    """
    check_methods(methods)
    if not datasets or not methods or not ipcs or not seeds:
        raise ValueError("a study needs at least one dataset, method, IPC and seed")
    for ipc in ipcs:
        if ipc < 1:
            raise ValueError(f"ipc must be ≥ 1, got {ipc}")
    cells: list[Cell] = []
    for i, ipc in enumerate(ipcs):
        for method in methods:
            if method == "full":
                continue
            cells += [Cell(d, method, ipc, s, budget.tag) for d in datasets for s in seeds]
        if i == 0 and "full" in methods:
            cells += [Cell(d, "full", None, s, budget.tag) for d in datasets for s in seeds]
    return cells


def shard(cells: list[Cell], rank: int, world_size: int) -> list[Cell]:
    """Round-robin share of ``rank`` among ``world_size`` processes (cell i goes to rank i mod N)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 ≤ rank < world size, got rank {rank}, world size {world_size}")
    return cells[rank::world_size]
