"""What a study costs on a CPU, before running it: CPU seconds per cell at one thread.

A linear model of the work each cell does, with constants measured on this project's 2-core machine at
one thread by ``scripts/probe_study_costs.py`` (process CPU time; see ``MEASURED``):

* training an evaluation network: E + 1 passes (the published schedule), each pass ⌈N/256⌉ optimiser
  steps costing ``step_s + n·c(n)`` for n images (``c`` from 2.8 ms per image in small batches to
  3.5 ms in full ones; DSA augmentation ``dsa_factor`` times that), then one forward pass over the test
  split (``forward_s`` per image); a score is M networks;
* the indicator of a (task, IPC): R random subsets of K·IPC images, each one score without augmentation,
  paid by the first cell of that (task, IPC) in run order (the study runs the random cells first);
* herding / k-center: one score, plus the embedding network (``embed_epochs + 1`` passes over the train
  split and a forward pass) paid once per (task, seed);
* a distillation: iterations × (``a·K + b``) seconds (per method and IPC, fitted on 2- and 5-class
  datasets), plus its score with the method's recipe (DSA for DSA, DM, MTT); MTT's expert bank
  (experts × epochs passes over the train split with DSA) is paid by the task's first MTT cell.

The estimate ignores data loading (seconds), checkpoints and plots; on a loaded machine wall time is
longer than CPU time.
"""
from __future__ import annotations

from dataclasses import dataclass

from .cells import Budget, Cell, method_overrides

# CPU seconds at one thread (torch.set_num_threads(1)), measured with scripts/probe_study_costs.py on this
# project's 2-core machine while other jobs loaded it (load average 12-15): process CPU time, so an upper
# bound for a machine running the study alone. A training step of n images costs step_s + n·c(n), c rising
# from image_s (small sets: 2.8 ms per image, as measured at n = 20, the size distilled sets are scored at)
# to full_image_s in full 256-image batches (2.7 ms per image over a whole training split, 4.4-4.8 ms on
# one repeated batch). DSA augmentation measured within noise of the plain step (0.85-1.05x).
MEASURED = {  # results/study/cost_probe.json
    "step_s": 0.005, "image_s": 0.0028, "full_image_s": 0.0035,
    "dsa_factor": 1.0,
    "forward_s": 0.0015,  # inference, per test image (batches of 512; measured 1.7 ms)
    "expert_image_epoch_s": 0.0038,  # MTT expert training with DSA, per image and epoch (3.5-4.0 ms measured)
    # seconds per iteration = a·classes + b at the quick preset, per (method, IPC): the line through the
    # BreastMNIST (2 classes) and RetinaMNIST (5 classes) measurements
    "iteration": {
        ("dm", 1): (0.048, 0.047), ("dm", 10): (0.047, 0.097),
        ("dc", 1): (0.104, 0.32), ("dc", 10): (4.42, 3.14),
        ("dsa", 1): (0.174, 0.077), ("dsa", 10): (4.10, 3.97),
        ("mtt", 1): (0.067, 0.033), ("mtt", 10): (0.64, 0.0),
    },
}
BATCH = 256
EMBED_EPOCHS = 10


@dataclass(frozen=True)
class TaskSize:
    """What the cost of a task's cells depends on."""

    classes: int
    train: int
    test: int

    @classmethod
    def of(cls, dataset) -> "TaskSize":
        return cls(dataset.num_classes, len(dataset.train_labels), len(dataset.test_labels))


def step_seconds(n: int, c: dict = MEASURED) -> float:
    """One plain optimiser step on n images."""
    per_image = c["image_s"] + (c["full_image_s"] - c["image_s"]) * min(n, BATCH) / BATCH
    return c["step_s"] + n * per_image


def train_seconds(n: int, epochs: int, dsa: bool, c: dict = MEASURED) -> float:
    """One network trained on n images for the published schedule's epochs + 1 passes."""
    full, rest = divmod(n, BATCH)
    per_pass = full * step_seconds(BATCH, c) + (step_seconds(rest, c) if rest else 0.0)
    return (epochs + 1) * per_pass * (c["dsa_factor"] if dsa else 1.0)


def score_seconds(n: int, size: TaskSize, models: int, epochs: int, dsa: bool, c: dict = MEASURED) -> float:
    return models * (train_seconds(n, epochs, dsa, c) + size.test * c["forward_s"])


def _nearest(table: dict, method: str, ipc: int):
    ipcs = sorted(i for m, i in table if m == method)
    return table[(method, min(ipcs, key=lambda i: (abs(i - ipc), i)))]


def _method_config(budget: Budget, method: str, ipc: int):
    from ..methods import make_config

    return make_config(method, ipc, budget.resolved("method_preset"), **method_overrides(budget, method, ipc))


def cell_costs(cells: list[Cell], sizes: dict[str, TaskSize], budget: Budget, c: dict = MEASURED) -> list[dict]:
    """Per cell, in run order: {"cell", "seconds", "parts": {what: seconds}}; shared work (indicator,
    embedding, expert bank) is charged to the first cell that needs it."""
    models = budget.resolved("eval_models")
    epochs = budget.resolved("eval_epochs") or 300
    full_epochs = budget.resolved("full_epochs") or 300
    subsets = budget.resolved("random_subsets")
    paid: set = set()
    out = []
    for cell in cells:
        size = sizes[cell.dataset]
        parts: dict[str, float] = {}
        if cell.ipc is not None and (cell.dataset, cell.ipc) not in paid:
            paid.add((cell.dataset, cell.ipc))
            parts["indicator"] = subsets * score_seconds(size.classes * cell.ipc, size, models, epochs, False, c)
        if cell.method == "random":
            if cell.seed != 0:
                parts["random subsets"] = subsets * score_seconds(size.classes * cell.ipc, size, models, epochs,
                                                                  False, c)
        elif cell.method == "full":
            parts["score"] = score_seconds(size.train, size, models, full_epochs, False, c)
        elif cell.method in ("herding", "kcenter"):
            if (cell.dataset, cell.seed, "embed") not in paid:
                paid.add((cell.dataset, cell.seed, "embed"))
                parts["embedding"] = train_seconds(size.train, EMBED_EPOCHS, False, c) + size.train * c["forward_s"]
            parts["score"] = score_seconds(size.classes * cell.ipc, size, models, epochs, False, c)
        else:
            config = _method_config(budget, cell.method, cell.ipc)
            a, b = _nearest(c["iteration"], cell.method, cell.ipc)
            parts["distill"] = config.iterations * (a * size.classes + b)
            if cell.method == "mtt" and (cell.dataset, "experts") not in paid:
                paid.add((cell.dataset, "experts"))
                parts["experts"] = (config.num_experts * config.expert_train_epochs * size.train
                                    * c["expert_image_epoch_s"])
            dsa = cell.method != "dc"
            parts["score"] = score_seconds(size.classes * cell.ipc, size, models, epochs, dsa, c)
        out.append({"cell": cell, "seconds": sum(parts.values()), "parts": parts})
    return out


def summary(costs: list[dict], world_size: int = 1) -> dict:
    """Totals: CPU hours, per method, per round-robin shard, and the wall hours of ``world_size`` shards
    at one thread each that take over each other's cells when done (≈ total / shards, at least the longest cell)."""
    total = sum(x["seconds"] for x in costs)
    per_method: dict[str, float] = {}
    per_part: dict[str, float] = {}
    for x in costs:
        per_method[x["cell"].method] = per_method.get(x["cell"].method, 0.0) + x["seconds"]
        for k, v in x["parts"].items():
            per_part[k] = per_part.get(k, 0.0) + v
    shards = [sum(x["seconds"] for x in costs[r::world_size]) for r in range(world_size)]
    longest = max((x["seconds"] for x in costs), default=0.0)
    return {"cpu_hours": total / 3600, "per_method_hours": {k: v / 3600 for k, v in per_method.items()},
            "per_part_hours": {k: v / 3600 for k, v in per_part.items()},
            "shard_hours": [s / 3600 for s in shards],
            "wall_hours": max(total / world_size, longest) / 3600, "longest_cell_minutes": longest / 60}
