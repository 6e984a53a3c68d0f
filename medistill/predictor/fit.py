"""How well the random-subset score predicts the distilled score, fitted on a study table.

Each pair is one table row: x = the random real subset's score at the row's IPC (its ``random_*``
columns), y = the row's own score, for one metric (accuracy, balanced accuracy or AUC).

- Correlation: Pearson and Spearman with a percentile bootstrap 95% CI (pairs resampled, seeded).
  Needs n ≥ 3 pairs and non-constant x and y; otherwise r is None (two points always lie on a line,
  so a correlation from them says nothing). The bootstrap CI needs n ≥ 4.
- Regression: ordinary least squares y = a + b·x per method (and per (method, IPC) with ≥ 3 points).
- Prediction interval: ŷ ± t(0.975, n−2) · s · √(1 + 1/n + (x₀ − x̄)² / Sxx), s the residual standard
  error; needs n ≥ 3. Marked "not validated" when the pairs come from fewer than 3 distinct datasets:
  the interval then only describes the points, it is no evidence that the relation carries over.
- Leave-one-dataset-out (LODO): for each dataset, fit on the other datasets' pairs, predict this
  dataset's pairs; the mean absolute error over held-out datasets. Needs ≥ 3 distinct datasets
  (so that each fit has ≥ 2 datasets); otherwise None. Reported next to the same error of a
  predictor that ignores the indicator (the other datasets' mean score): the indicator is only
  useful where it beats that.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

MIN_POINTS = 3
MIN_DATASETS = 3
MIN_BOOTSTRAP = 4


@dataclass
class Pair:
    dataset: str
    method: str
    ipc: int | None
    x: float  # random-subset score
    y: float  # the method's score


def pairs_from_table(rows: list[dict], metric: str = "accuracy", methods=None) -> list[Pair]:
    """Pairs of rows that have both scores; ``full`` (no IPC) and the ``random`` rows themselves are left out."""
    out = []
    for r in rows:
        x, y = r.get(f"random_{metric}_mean"), r.get(f"{metric}_mean")
        if r["method"] in ("full", "random") or x is None or y is None:
            continue
        if methods is not None and r["method"] not in methods:
            continue
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        out.append(Pair(r["dataset"], r["method"], r.get("ipc"), float(x), float(y)))
    return out


@dataclass
class Correlation:
    n: int
    pearson: float | None
    pearson_ci: tuple[float, float] | None
    spearman: float | None
    spearman_ci: tuple[float, float] | None
    note: str = ""


def _degenerate(x: np.ndarray, y: np.ndarray) -> bool:
    return len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of (B, n) arrays."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    r = (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))
    return np.clip(r, -1.0, 1.0)


def correlation(x, y, bootstrap: int = 2000, seed: int = 0) -> Correlation:
    """Pearson and Spearman r with percentile bootstrap 95% CIs; None where the data cannot support one."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    if n < MIN_POINTS:
        return Correlation(n, None, None, None, None, f"n = {n} < {MIN_POINTS}: no correlation claimed")
    if _degenerate(x, y):
        return Correlation(n, None, None, None, None, "constant scores: correlation undefined")
    pearson = float(stats.pearsonr(x, y)[0])
    spearman = float(stats.spearmanr(x, y)[0])
    if n < MIN_BOOTSTRAP:
        return Correlation(n, pearson, None, spearman, None, f"n = {n} < {MIN_BOOTSTRAP}: no bootstrap CI")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, (bootstrap, n))
    bx, by = x[idx], y[idx]
    keep = (np.ptp(bx, axis=1) > 0) & (np.ptp(by, axis=1) > 0)  # resamples with a defined correlation
    bx, by = bx[keep], by[keep]
    rp = _rowwise_pearson(bx, by)
    rs = _rowwise_pearson(stats.rankdata(bx, axis=1), stats.rankdata(by, axis=1))
    ci = lambda v: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) if len(v) >= 20 else None
    return Correlation(n, pearson, ci(rp), spearman, ci(rs))


@dataclass
class LinearFit:
    """OLS y = intercept + slope·x over n points from ``datasets`` distinct datasets."""

    n: int
    datasets: int
    intercept: float | None
    slope: float | None
    residual_std: float | None  # s, with n − 2 degrees of freedom; None when n < 3
    x_mean: float | None
    sxx: float | None

    @property
    def validated(self) -> bool:
        return self.datasets >= MIN_DATASETS and self.residual_std is not None

    def predict(self, x0: float) -> float | None:
        if self.slope is None:
            return None
        return self.intercept + self.slope * x0

    def interval(self, x0: float, level: float = 0.95) -> tuple[float, float] | None:
        """t-based prediction interval for a new point at x0; None when n < 3."""
        if self.residual_std is None:
            return None
        t = stats.t.ppf(0.5 + level / 2, self.n - 2)
        half = t * self.residual_std * math.sqrt(1 + 1 / self.n + (x0 - self.x_mean) ** 2 / self.sxx)
        y0 = self.predict(x0)
        return (y0 - half, y0 + half)


def fit_line(x, y, datasets: int | None = None) -> LinearFit:
    """Least squares on (x, y); slope None when fewer than 2 points or x is constant."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    datasets = n if datasets is None else datasets
    if n < 2 or np.ptp(x) == 0:
        return LinearFit(n, datasets, None, None, None, None, None)
    x_mean = float(x.mean())
    sxx = float(((x - x_mean) ** 2).sum())
    slope = float(((x - x_mean) * (y - y.mean())).sum() / sxx)
    intercept = float(y.mean() - slope * x_mean)
    s = None
    if n >= 3:
        residuals = y - (intercept + slope * x)
        s = float(math.sqrt((residuals ** 2).sum() / (n - 2)))
    return LinearFit(n, datasets, intercept, slope, s, x_mean, sxx)


def fit_pairs(pairs: list[Pair]) -> LinearFit:
    return fit_line([p.x for p in pairs], [p.y for p in pairs], len({p.dataset for p in pairs}))


@dataclass
class Lodo:
    """Leave-one-dataset-out: per held-out dataset, the mean |prediction − truth| of its pairs."""

    datasets: int
    per_dataset: dict[str, float] = field(default_factory=dict)
    mae: float | None = None
    mean_only_mae: float | None = None  # the same, predicting the other datasets' mean score (no indicator)
    note: str = ""


def leave_one_dataset_out(pairs: list[Pair]) -> Lodo:
    names = sorted({p.dataset for p in pairs})
    if len(names) < MIN_DATASETS:
        return Lodo(len(names), note=f"{len(names)} dataset(s) < {MIN_DATASETS}: not validated")
    errors, mean_only = {}, {}
    for held in names:
        rest = [p for p in pairs if p.dataset != held]
        fit = fit_pairs(rest)
        if fit.slope is None:
            continue
        rest_mean = float(np.mean([p.y for p in rest]))
        errors[held] = float(np.mean([abs(fit.predict(p.x) - p.y) for p in pairs if p.dataset == held]))
        mean_only[held] = float(np.mean([abs(rest_mean - p.y) for p in pairs if p.dataset == held]))
    if not errors:
        return Lodo(len(names), note="no held-out fit possible (constant random-subset scores)")
    return Lodo(len(names), errors, float(np.mean(list(errors.values()))), float(np.mean(list(mean_only.values()))))


@dataclass
class MethodFit:
    """Everything fitted for one method and metric (``ipc`` None: all IPCs pooled)."""

    method: str
    metric: str
    ipc: int | None
    correlation: Correlation
    line: LinearFit
    lodo: Lodo

    @property
    def validated(self) -> bool:
        return self.line.validated and self.lodo.mae is not None

    def to_dict(self) -> dict:
        return {**asdict(self), "validated": self.validated}


def fit_method(pairs: list[Pair], method: str, metric: str, ipc: int | None = None) -> MethodFit:
    chosen = [p for p in pairs if p.method == method and (ipc is None or p.ipc == ipc)]
    return MethodFit(method, metric, ipc, correlation([p.x for p in chosen], [p.y for p in chosen]),
                     fit_pairs(chosen), leave_one_dataset_out(chosen))


def fit_table(rows: list[dict], metric: str = "accuracy") -> list[MethodFit]:
    """One pooled fit per method, plus one per (method, IPC) where that IPC has ≥ 3 pairs and more than one IPC exists."""
    pairs = pairs_from_table(rows, metric)
    fits = []
    for method in sorted({p.method for p in pairs}):
        own = [p for p in pairs if p.method == method]
        fits.append(fit_method(pairs, method, metric))
        ipcs = sorted({p.ipc for p in own if p.ipc is not None})
        if len(ipcs) > 1:
            for ipc in ipcs:
                if sum(p.ipc == ipc for p in own) >= MIN_POINTS:
                    fits.append(fit_method(pairs, method, metric, ipc))
    return fits


def best_fit(fits: list[MethodFit], method: str, ipc: int | None) -> MethodFit | None:
    """The per-IPC fit of ``method`` at ``ipc`` if there is one, else its pooled fit."""
    own = [f for f in fits if f.method == method]
    for f in own:
        if ipc is not None and f.ipc == ipc:
            return f
    return next((f for f in own if f.ipc is None), None)
