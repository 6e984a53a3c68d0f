"""Predicting each method's score on a new dataset from its indicator, and the one-line advice.

For each method the fit at the requested IPC (:mod:`.fit`) gives the predicted score of one
distillation run, clipped to the metric's range [0, 1], with a nominal 90% interval for a new task of
a new source (between-source variation included, plus the seed-to-seed variation of a single run where
the table has several seeds). The expected gain over a random real subset at the same IPC is the
predicted score minus the measured indicator, with the interval shifted alike (so it stays within
[−indicator, 1 − indicator]).

When the dataset's own source is in the table, its tasks (and the tasks built from it) are left out of
the fit: the prediction is then out of sample, as in leave-one-source-out validation.

The advice (:func:`recommend`), using only validated fits:

* "distill with M" (or "use M" for a selection of real images) when the lower end of M's gain
  interval is above the random subsets' spread on this dataset (the "beats random" margin);
* "a random subset is as good" when no method's gain interval reaches above that spread;
* "not enough evidence" otherwise — intervals straddling the margin, or no validated fit (then it
  says what the unvalidated fits would suggest, and why they are not validated).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .fit import DISTILLED, MethodFit, fit_points, sources_of
from .stats import LEVEL, clip, clip_interval


@dataclass
class Prediction:
    method: str
    ipc: int
    metric: str
    indicator: float
    indicator_spread: float | None
    predicted: float | None = None
    interval: tuple[float, float] | None = None
    gain: float | None = None
    gain_interval: tuple[float, float] | None = None
    tasks: int = 0
    sources: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # the dataset's own source(s), left out of the fit
    validated: bool = False
    reasons: list[str] = field(default_factory=list)
    validation_tasks: int = 0  # the full table's fit, on which the validation was run
    validation_sources: int = 0
    loso_mae: float | None = None
    loso_mae_mean_only: float | None = None
    loso_coverage: float | None = None
    level: float = LEVEL
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def predict_method(fit: MethodFit | None, method: str, ipc: int, metric: str, indicator: float,
                   spread: float | None = None, source: str | None = None, level: float = LEVEL) -> Prediction:
    """``source``: the new dataset's source key, when it may be in the table (its tasks are left out)."""
    p = Prediction(method, ipc, metric, indicator, spread, level=level)
    if fit is None:
        p.note = f"no {method} tasks at IPC {ipc} in the table"
        p.reasons = [p.note]
        return p
    points = fit.evidence
    if source is not None:
        dropped = sorted({q.source for q in points if sources_of(q.source) & sources_of(source)})
        if dropped:
            points = [q for q in points if q.source not in dropped]
            p.left_out = dropped
    line = fit_points(points) if p.left_out else fit.line
    p.tasks, p.sources = len(points), sorted({q.source for q in points})
    p.validated, p.reasons = fit.validated, fit.reasons
    p.validation_tasks, p.validation_sources = fit.tasks, len(fit.sources)
    p.loso_mae, p.loso_mae_mean_only, p.loso_coverage = fit.loso.mae, fit.loso.mae_mean_only, fit.loso.coverage.rate
    if line.slope is None:
        own = f" once its own source ({', '.join(p.left_out)}) is left out" if p.left_out else ""
        p.note = f"no line: {len(points)} task(s) at IPC {ipc}{own}" + (
            f" ({line.note})" if len(points) >= 2 and line.note else "")
        p.validated = False
        p.reasons = p.reasons + [p.note]
        return p
    p.predicted = clip(line.predict(indicator))
    p.interval = clip_interval(line.interval(indicator, level, single_run=True))
    p.gain = p.predicted - indicator
    if p.interval is not None:
        p.gain_interval = (p.interval[0] - indicator, p.interval[1] - indicator)
    notes = []
    if p.left_out:
        notes.append(f"out of sample: {', '.join(p.left_out)} left out of the fit")
    if line.x_range and not line.x_range[0] <= indicator <= line.x_range[1]:
        notes.append(f"the indicator {indicator:.3f} is outside the fitted range "
                     f"[{line.x_range[0]:.3f}, {line.x_range[1]:.3f}]: an extrapolation")
    if p.interval is None:
        notes.append(f"no interval ({line.note or 'too few tasks'})")
    p.note = "; ".join(notes)
    return p


def predict_all(fits: list[MethodFit], ipc: int, indicator: float, spread: float | None = None,
                source: str | None = None, methods=None, metric: str | None = None) -> list[Prediction]:
    """One prediction per method with tasks in the table (any IPC), from its fit at ``ipc``."""
    metric = metric or (fits[0].metric if fits else "balanced_accuracy")
    names = []
    for f in fits:
        if f.method not in names and (methods is None or f.method in methods):
            names.append(f.method)
    by_key = {(f.method, f.ipc): f for f in fits}
    return [predict_method(by_key.get((m, ipc)), m, ipc, metric, indicator, spread, source) for m in names]


@dataclass
class Recommendation:
    kind: str  # "distill", "random" or "insufficient"
    method: str | None
    line: str
    basis: str

    def to_dict(self) -> dict:
        return asdict(self)


def _verb(method: str) -> str:
    return f"distill with {method.upper()}" if method in DISTILLED else f"use {method} (a selection of real images)"


def _gain(p: Prediction) -> str:
    return f"{p.gain:+.3f}, {p.level:.0%} interval [{p.gain_interval[0]:+.3f}, {p.gain_interval[1]:+.3f}]"


def recommend(predictions: list[Prediction], ipc: int) -> Recommendation:
    usable = [p for p in predictions if p.predicted is not None]
    if not usable:
        why = "; ".join(dict.fromkeys(p.note for p in predictions if p.note)) or "no tasks in the table"
        return Recommendation("insufficient", None, f"not enough evidence: no method has a fit at IPC {ipc} ({why})",
                              f"no fitted tasks at IPC {ipc}")
    tasks = max(p.tasks for p in usable)
    sources = sorted({s for p in usable for s in p.sources})
    validated = [p for p in usable if p.validated and p.gain_interval is not None]
    basis = (f"fits of up to {tasks} tasks from {len(sources)} source group(s) ({', '.join(sources)}) at IPC {ipc}; "
             + (f"validated: {', '.join(p.method for p in validated)}" if validated else "no fit is validated")
             + (f"; not validated: {', '.join(p.method for p in usable if p not in validated)}"
                if len(validated) < len(usable) else ""))
    margin = usable[0].indicator_spread or 0.0
    if not validated:
        best = max(usable, key=lambda p: p.gain)
        why = "; ".join(dict.fromkeys(r for p in usable for r in p.reasons)) or "no interval"
        return Recommendation("insufficient", None,
                              f"not enough evidence: no validated fit at IPC {ipc} ({why}); unvalidated, the fits "
                              f"would favour {best.method} (gain {best.gain:+.3f})", basis)
    best = max(validated, key=lambda p: p.gain)
    if best.gain_interval[0] > margin:
        return Recommendation("distill", best.method,
                              f"{_verb(best.method)}: predicted gain over a random subset {_gain(best)}, above the "
                              f"random subsets' spread {margin:.3f}", basis)
    if all(p.gain_interval[1] <= margin for p in validated):
        return Recommendation("random", None,
                              f"a random subset is as good: no method's {best.level:.0%} gain interval reaches above "
                              f"the random subsets' spread {margin:.3f} (best: {best.method}, {_gain(best)})", basis)
    return Recommendation("insufficient", best.method,
                          f"not enough evidence: the intervals straddle the random baseline (best guess "
                          f"{best.method}, {_gain(best)}; margin {margin:.3f})", basis)
