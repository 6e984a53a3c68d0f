"""The study grid: cells (dataset, method or selector, IPC, seed, budget) and their budgets.

A cell is the unit of work, of claiming and of one row in the results table. Its id names it in
file names: ``breastmnist-dm-ipc1-quick-s0`` (``-all-`` for the full training set, which has no IPC).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from ..data.run_folder import run_name

DISTILL_METHODS = ("dc", "dsa", "dm", "mtt")
BASELINES = ("random", "herding", "kcenter", "full")

# Evaluation budget of each preset: networks per score, epochs per network (None: the protocol's
# 300, 1000 with DSA), epochs for the full-training-set baseline, the random baseline's R subsets, and
# the methods' preset (``make_config``) it distils with. quick matches `medistill distill --preset quick`
# (3 networks × 300 epochs), so its run folders can be imported into a study.
#
# ``study`` is the budget of the predictor's evidence grid (results/study/README.md): 13 tasks × 7
# methods × IPC {1, 10} with 3 seeds of DM and DC, about 10.5 CPU-hours at one thread by the cost model
# (:mod:`.cost`; ``medistill study --preset study --dry-run`` prints the cells and the estimate). It
# distils with the quick preset unchanged and scores every set, and each of the R = 5 random subsets of
# the indicator, with 3 networks × 300 epochs (the published schedule: 301 passes, lr × 0.1 after pass
# 151): on a CPU a ConvNet step costs ~2.8 ms per image plus ~5 ms, so a score of K·IPC ≤ 50 images is
# seconds to a minute, and 15 scores per (task, IPC) cost ~4.5 of the ~10 hours; fewer epochs would
# leave DSA-trained sets under-trained, fewer networks would add noise the seeds already carry.
PRESET_BUDGETS = {
    "quick": {"eval_models": 3, "eval_epochs": 300, "full_epochs": 300, "random_subsets": 5, "method_preset": "quick"},
    "paper": {"eval_models": 5, "eval_epochs": None, "full_epochs": None, "random_subsets": 5, "method_preset": "paper"},
    "study": {"eval_models": 3, "eval_epochs": 300, "full_epochs": 30, "random_subsets": 5, "method_preset": "quick"},
}


def method_overrides(budget: "Budget", method: str, ipc: int) -> dict:
    """Settings a budget changes on top of its method preset for ``method`` at ``ipc``: ``--iterations``."""
    return {} if budget.iterations is None else {"iterations": budget.iterations}


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
        value = getattr(self, key, None)  # keys without an override field (method_preset) come from the preset
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
        return run_name(self.dataset, self.method, self.ipc, self.budget, self.seed)


def check_methods(methods) -> None:
    known = DISTILL_METHODS + BASELINES
    for m in methods:
        if m not in known:
            raise ValueError(f"unknown method or baseline {m!r}; choose from {', '.join(known)}")


def seeds_by_method(seeds, methods) -> dict[str, list[int]]:
    """``seeds``: a list for every method, or {method: seeds} with ``"*"`` for the others (default [0])."""
    if isinstance(seeds, dict):
        default = list(seeds.get("*", [0]))
        unknown = set(seeds) - set(methods) - {"*"}
        if unknown:
            raise ValueError(f"seeds given for {', '.join(sorted(unknown))}, which the study does not run")
        return {m: list(seeds.get(m, default)) for m in methods}
    return {m: list(seeds) for m in methods}


def grid(datasets, methods, ipcs, seeds, budget: Budget) -> list[Cell]:
    """All cells in run order: each method's first seed (IPC, then method in the order given, then
    dataset), then the further seeds in the same order, so a study stopped early has every task and
    method once. ``seeds``: a list, or {method: seeds, "*": default} (:func:`seeds_by_method`).

    ``full`` does not depend on the IPC: it appears once per (dataset, seed), after the first IPC's cells.
    """
    check_methods(methods)
    per_method = seeds_by_method(seeds, methods)
    if not datasets or not methods or not ipcs or not all(per_method.values()):
        raise ValueError("a study needs at least one dataset, method, IPC and seed")
    for ipc in ipcs:
        if ipc < 1:
            raise ValueError(f"ipc must be ≥ 1, got {ipc}")
    cells: list[Cell] = []
    for first in (True, False):
        for i, ipc in enumerate(ipcs):
            for method in methods:
                chosen = per_method[method][:1] if first else per_method[method][1:]
                if method == "full":
                    continue
                cells += [Cell(d, method, ipc, s, budget.tag) for d in datasets for s in chosen]
            if i == 0 and "full" in methods:
                chosen = per_method["full"][:1] if first else per_method["full"][1:]
                cells += [Cell(d, "full", None, s, budget.tag) for d in datasets for s in chosen]
    return cells


# The study preset's grid (``medistill study --preset study`` without --datasets/--methods/--ipcs/--seeds):
# 12 tasks from three real sources (results/study/README.md) plus the simulation set built from them.
STUDY_TASKS = (
    "breastmnist",
    "retinamnist", "retinamnist:0v4", "retinamnist:0v1", "retinamnist:0v1-4", "retinamnist:0-1v2-4",
    "brain", "brain:glioma_v_meningioma", "brain:glioma_v_pituitary", "brain:meningioma_v_pituitary",
    "brain:notumor_v_glioma", "brain:notumor_v_glioma+meningioma+pituitary",
    "simulation:breastmnist_v_retinamnist_v_brain",
)
STUDY_METHODS = ("random", "herding", "kcenter", "dm", "dc", "dsa", "mtt")
STUDY_IPCS = (1, 10)
STUDY_SEEDS = {"dm": [0, 1, 2], "dc": [0, 1, 2], "*": [0]}


def grid_axes(preset: str, datasets=None, methods=None, ipcs=None, seeds=None) -> tuple:
    """(datasets, methods, ipcs, seeds) of a study: each one given, else the preset's default (``study``: the
    predictor's grid above; any other preset: breastmnist, retinamnist and the simulation set, every method
    and baseline, IPC 1, seed 0). Per-method seeds of the default keep only the methods run (and ``*``)."""
    study = preset == "study"
    datasets = datasets or (list(STUDY_TASKS) if study else ["breastmnist", "retinamnist", "simulation"])
    methods = methods or list(STUDY_METHODS if study else DISTILL_METHODS + BASELINES)
    ipcs = ipcs or list(STUDY_IPCS if study else [1])
    given = seeds is not None
    seeds = seeds if given else (dict(STUDY_SEEDS) if study else [0])
    if isinstance(seeds, dict):
        seeds = {m: v for m, v in seeds.items() if m == "*" or m in methods or given}
    return datasets, methods, ipcs, seeds


def shard(cells: list[Cell], rank: int, world_size: int) -> list[Cell]:
    """Round-robin share of ``rank`` among ``world_size`` processes (cell i goes to rank i mod N)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 ≤ rank < world size, got rank {rank}, world size {world_size}")
    return cells[rank::world_size]
