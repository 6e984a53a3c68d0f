"""Fitting the predictor on a study table: per method and IPC, one point per task, grouped by source.

Points (``points_from_rows``): for each (method, IPC, task) of one budget preset, x = the task's
indicator — the mean over R random real subsets at that IPC of their mean score (the row's
``random_<metric>_mean``; every row of a task shares it) with its spread over subsets — and y = the
method's score averaged over its seeds (each seed's mean over networks), with the seeds kept for the
seed-to-seed variance. ``full`` and ``random`` rows are not points (random *is* the indicator).

Why one fit per (method, IPC) and not IPC as a covariate: the gain of distillation over random images
shrinks with IPC (the published tables; the indicator itself rises with IPC), so intercept *and* slope
differ by IPC; a shared slope is an assumption two IPC levels cannot check, and every IPC has its own
≥ 12 tasks, which is enough for a line. ``predict`` at an IPC without a fit says so instead of
extrapolating across IPCs.

Each fit (:class:`MethodFit`) carries the line with prediction intervals that include between-source
variation (:mod:`.stats`), the correlation with a source-level bootstrap CI, and leave-one-source-out
validation (:func:`leave_one_source_out`). All three rest on the *evidence*: the tasks of a single source.
A task built from several sources (the simulation task) is kept in the fit's points, for the tables and
the plots, but is in no line, no correlation and no fold: it shares images with every source, so it is not
an independent cluster for the source bootstrap, and as by far the easiest task it would be a lever at the
end of the line whose pull no fold could check. It is called **validated** only when all of these hold:

1. its tasks come from at least ``MIN_SOURCES`` (3) distinct single sources, each task's indicator a mean
   over at least ``MIN_SUBSETS`` (5) random subsets;
2. leave-one-source-out ran for every single source (held-out MAE and coverage measured);
3. the correlation's 95% CI (sources resampled) excludes 0;
4. the held-out MAE is below that of a predictor that ignores the indicator (the training tasks' mean);
5. the held-out coverage of the nominal 90% intervals is not credibly below 90% (one-sided binomial p ≥ 0.05).

Otherwise it is "not validated", with the failed conditions as its reasons.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field

import numpy as np

from .stats import (LEVEL, Coverage, GroupedCorrelation, GroupedLine, clip, clip_interval, coverage, fit_grouped,
                    grouped_correlation)

METRICS = ("accuracy", "balanced_accuracy", "auc")  # the study table's score columns (metric_mean)
DEFAULT_METRIC = "balanced_accuracy"
MIN_SOURCES = 3
MIN_SUBSETS = 5  # random subsets behind an indicator
NOT_POINTS = ("full", "random")
DISTILLED = ("dc", "dsa", "dm", "mtt")
METHOD_ORDER = DISTILLED + ("herding", "kcenter")


def row_source(row: dict) -> str:
    """A row's source key: its ``source`` column, else derived from the task name (older tables)."""
    if row.get("source"):
        return str(row["source"])
    name = str(row["dataset"])
    head, _, spec = name.partition(":")
    if head == "simulation" and spec:
        return "+".join(sorted(spec.split("_v_")))
    return head


def sources_of(group: str) -> set[str]:
    """The single sources behind a source key ('brain+breastmnist+retinamnist' → three)."""
    return set(group.split("+"))


@dataclass
class Point:
    task: str
    source: str
    method: str
    ipc: int
    x: float  # the indicator: mean over random subsets
    x_spread: float | None  # spread over subsets
    y: float  # the method's score, mean over seeds
    seeds: list[float] = field(default_factory=list)  # each seed's score
    subsets: int | None = None  # random subsets behind the indicator


def table_presets(rows: list[dict]) -> list[str]:
    """Presets of the table's point rows, most rows first."""
    counts = defaultdict(int)
    for r in rows:
        if r.get("method") not in NOT_POINTS:
            counts[str(r.get("preset"))] += 1
    return sorted(counts, key=lambda p: (-counts[p], p))


def resolve_preset(rows: list[dict], requested: str | None = None) -> str | None:
    """The table's budget tag to fit: ``requested`` itself, or the one tag of that preset with overrides
    (``quick`` → ``quick~1a2b3c4d``); default the table's most common. ValueError when none or several match."""
    presets = table_presets(rows)
    if requested is None or requested in presets:
        return requested if requested is not None else (presets[0] if presets else None)
    matches = [p for p in presets if p.split("~")[0] == requested]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ValueError(f"preset {requested!r} has several budgets in the table ({', '.join(matches)}); name one")
    raise ValueError(f"no method rows of preset {requested!r} in the table; presets there: {', '.join(presets) or 'none'}")


def points_from_rows(rows: list[dict], metric: str = DEFAULT_METRIC, preset: str | None = None) -> list[Point]:
    """One point per (method, IPC, task) of ``preset`` (default: the table's most common preset)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    presets = table_presets(rows)
    preset = preset if preset is not None else (presets[0] if presets else None)
    grouped: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if r.get("method") in NOT_POINTS or r.get("ipc") is None or str(r.get("preset")) != str(preset):
            continue
        x, y = r.get(f"random_{metric}_mean"), r.get(f"{metric}_mean")
        if x is None or y is None or not (np.isfinite(x) and np.isfinite(y)):
            continue
        grouped[(r["method"], int(r["ipc"]), r["dataset"])].append(r)
    out = []
    for (method, ipc, task), group in sorted(grouped.items()):
        group = sorted(group, key=lambda r: r.get("seed") or 0)
        spreads = [r.get(f"random_{metric}_spread") for r in group if r.get(f"random_{metric}_spread") is not None]
        seeds = [float(r[f"{metric}_mean"]) for r in group]
        counts = [r.get("random_subsets") for r in group if r.get("random_subsets") is not None]
        out.append(Point(task, row_source(group[0]), method, ipc, float(np.mean([r[f"random_{metric}_mean"] for r in group])),
                         float(np.mean(spreads)) if spreads else None, float(np.mean(seeds)), seeds,
                         min(counts) if counts else None))
    return out


def is_evidence(point: Point) -> bool:
    """Whether a fit rests on this point: a task of a single source (not one built from several)."""
    return "+" not in point.source


def evidence(points: list[Point]) -> list[Point]:
    return [p for p in points if is_evidence(p)]


def single_sources(points: list[Point]) -> list[str]:
    return sorted({p.source for p in evidence(points)})


def fit_points(points: list[Point]) -> GroupedLine:
    return fit_grouped([p.x for p in points], [p.y for p in points], [p.source for p in points],
                       [p.seeds for p in points])


@dataclass
class HeldOut:
    task: str
    source: str
    x: float
    y: float
    predicted: float | None
    interval: tuple[float, float] | None
    mean_only: float


@dataclass
class Loso:
    """Leave-one-source-out: every task of a source held out, the line fitted on the tasks that share no
    source with it (the simulation task, built from every source, is left out of each fold's fit and is
    never held out itself: no fit would be free of its sources)."""

    held: list[HeldOut] = field(default_factory=list)
    folds: dict = field(default_factory=dict)  # source → {"train_tasks", "train_sources", "held": n} or {"skipped": why}
    level: float = LEVEL

    @property
    def evaluated(self) -> list[HeldOut]:
        return [h for h in self.held if h.predicted is not None]

    @property
    def mae(self) -> float | None:
        h = self.evaluated
        return float(np.mean([abs(e.predicted - e.y) for e in h])) if h else None

    @property
    def mae_mean_only(self) -> float | None:
        h = self.evaluated
        return float(np.mean([abs(e.mean_only - e.y) for e in h])) if h else None

    @property
    def mae_identity(self) -> float | None:
        h = self.evaluated
        return float(np.mean([abs(e.x - e.y) for e in h])) if h else None

    @property
    def coverage(self) -> Coverage:
        h = self.evaluated
        return coverage([e.y for e in h], [e.interval for e in h], self.level)

    def per_source(self) -> dict[str, dict]:
        out = {}
        for source in sorted({h.source for h in self.evaluated}):
            mine = [h for h in self.evaluated if h.source == source]
            cov = coverage([e.y for e in mine], [e.interval for e in mine], self.level)
            out[source] = {"tasks": len(mine), "mae": float(np.mean([abs(e.predicted - e.y) for e in mine])),
                           "mae_mean_only": float(np.mean([abs(e.mean_only - e.y) for e in mine])),
                           "covered": cov.hits, "with_interval": cov.n}
        return out


def leave_one_source_out(points: list[Point], level: float = LEVEL) -> Loso:
    out = Loso(level=level)
    for source in sorted({p.source for p in points}):
        held = [p for p in points if p.source == source]
        train = [p for p in points if not (sources_of(p.source) & sources_of(source))]
        train_sources = sorted({p.source for p in train})
        if not train:
            out.folds[source] = {"skipped": "every other task shares a source with it"}
            continue
        line = fit_points(train)
        if line.slope is None:
            out.folds[source] = {"skipped": f"the other sources' {len(train)} task(s) give no line ({line.note})"}
            continue
        mean_only = float(np.mean([p.y for p in train]))
        for p in held:
            out.held.append(HeldOut(p.task, p.source, p.x, p.y, clip(line.predict(p.x)),
                                    clip_interval(line.interval(p.x, level)), mean_only))
        out.folds[source] = {"train_tasks": len(train), "train_sources": train_sources, "held": len(held)}
    return out


@dataclass
class MethodFit:
    """Everything fitted for one method at one IPC and one metric."""

    method: str
    ipc: int
    metric: str
    preset: str | None
    points: list[Point]
    line: GroupedLine
    correlation: GroupedCorrelation
    loso: Loso

    @property
    def evidence(self) -> list[Point]:
        """The points of the line, the correlation and the folds (single-source tasks)."""
        return evidence(self.points)

    @property
    def shown_only(self) -> list[Point]:
        """Points of tasks built from several sources: in the tables and plots, in no fit."""
        return [p for p in self.points if not is_evidence(p)]

    @property
    def tasks(self) -> int:
        return len(self.evidence)

    @property
    def sources(self) -> list[str]:
        return sorted({p.source for p in self.evidence})

    @property
    def reasons(self) -> list[str]:
        """Why the fit is not validated (empty: validated)."""
        out = []
        singles = single_sources(self.points)
        if len(singles) < MIN_SOURCES:
            out.append(f"its {self.tasks} task(s) come from {len(singles)} source(s) (< {MIN_SOURCES})")
        few = [p for p in self.evidence if p.subsets is None or p.subsets < MIN_SUBSETS]
        if few:
            out.append(f"the indicator of {len(few)} task(s) is a mean over fewer than {MIN_SUBSETS} random subsets "
                       "(or an unknown number)")
        skipped = [s for s in singles if "skipped" in self.loso.folds.get(s, {"skipped": ""})]
        if skipped or self.loso.mae is None:
            out.append("leave-one-source-out could not be run for " + (", ".join(skipped) if skipped else "any source"))
        c = self.correlation
        if c.pearson_ci is None:
            out.append(f"no correlation CI ({c.note or 'too few tasks'})")
        elif not c.excludes_zero:
            out.append(f"the correlation's 95% CI [{c.pearson_ci[0]:.2f}, {c.pearson_ci[1]:.2f}] includes 0")
        if self.loso.mae is not None and self.loso.mae >= self.loso.mae_mean_only:
            out.append(f"held-out MAE {self.loso.mae:.3f} does not beat ignoring the indicator "
                       f"({self.loso.mae_mean_only:.3f})")
        cov = self.loso.coverage
        if cov.n == 0 and self.loso.mae is not None:
            out.append("no held-out interval (too few training tasks)")
        elif cov.n < len(self.loso.evaluated):
            out.append(f"held-out intervals for only {cov.n} of {len(self.loso.evaluated)} held-out tasks (a fold's "
                       "training tasks were too few for one), so coverage is not measured on the rest")
        elif cov.too_narrow:
            out.append(f"held-out coverage {cov.text()} is credibly below the nominal {cov.nominal:.0%} "
                       f"(binomial p = {cov.p_below:.3f})")
        return out

    @property
    def validated(self) -> bool:
        return not self.reasons

    @property
    def gains(self) -> list[float]:
        """Score − indicator of each evidence task: what the method adds over random real images at its IPC."""
        return [p.y - p.x for p in self.evidence]

    @property
    def tasks_above_indicator(self) -> int:
        """On how many evidence tasks the method scores above its indicator (gain > 0)."""
        return sum(g > 0 for g in self.gains)

    @property
    def identity_predicts_better(self) -> bool:
        """Whether y = x ("as good as a random subset") predicts the held-out tasks better than the line: then the
        line, validated or not, is not the useful prediction."""
        mae, identity = self.loso.mae, self.loso.mae_identity
        return mae is not None and identity is not None and identity < mae

    def to_dict(self) -> dict:
        cov = self.loso.coverage
        return {"method": self.method, "ipc": self.ipc, "metric": self.metric, "preset": self.preset,
                "tasks": self.tasks, "sources": self.sources, "line": asdict(self.line),
                "correlation": asdict(self.correlation),
                "loso": {"mae": self.loso.mae, "mae_mean_only": self.loso.mae_mean_only,
                         "mae_identity": self.loso.mae_identity, "coverage": cov.rate, "covered": cov.hits,
                         "with_interval": cov.n, "level": self.loso.level, "folds": self.loso.folds,
                         "per_source": self.loso.per_source(), "held": [asdict(h) for h in self.loso.held]},
                "validated": self.validated, "reasons": self.reasons, "gains": self.gains,
                "identity_predicts_better": self.identity_predicts_better,
                "points": [asdict(p) for p in self.points],
                "shown_only": [p.task for p in self.shown_only]}


def fit_method(points: list[Point], method: str, ipc: int, metric: str, preset: str | None = None) -> MethodFit:
    mine = [p for p in points if p.method == method and p.ipc == ipc]
    used = evidence(mine)
    return MethodFit(method, ipc, metric, preset, mine, fit_points(used),
                     grouped_correlation([p.x for p in used], [p.y for p in used], [p.source for p in used]),
                     leave_one_source_out(mine))


def ordered_methods(methods) -> list[str]:
    methods = set(methods)
    return [m for m in METHOD_ORDER if m in methods] + sorted(methods - set(METHOD_ORDER))


def fit_table(rows: list[dict], metric: str = DEFAULT_METRIC, preset: str | None = None) -> list[MethodFit]:
    """One fit per (method, IPC) with points in the table, methods in the usual order."""
    presets = table_presets(rows)
    preset = preset if preset is not None else (presets[0] if presets else None)
    points = points_from_rows(rows, metric, preset)
    keys = {(p.method, p.ipc) for p in points}
    order = {m: i for i, m in enumerate(ordered_methods({m for m, _ in keys}))}
    return [fit_method(points, m, ipc, metric, preset) for m, ipc in sorted(keys, key=lambda k: (order[k[0]], k[1]))]
