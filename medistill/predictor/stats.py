"""The statistics of the predictor, on plain arrays: a line fitted to tasks grouped by source, its
prediction intervals with between-source variation, clipping to the metric's range, coverage, and a
correlation whose confidence interval resamples sources (not tasks).

Model (one method, one IPC; one point per task): y = a + b·x + u_source + e_task, with u ~ (0, σ_b²)
shared by the tasks of a source and e ~ (0, σ_w²). The line is ordinary least squares (each task
weighs the same). σ_b² and σ_w² come from the residuals by the one-way ANOVA method of moments
(MS_between, MS_within, n0 = (n − Σn_g²/n)/(G − 1); σ_b² = max(0, (MS_B − MS_W)/n0)). A new task from
a new source is predicted with variance x0ᵀ·Cov(β̂)·x0 + σ_b² + σ_w², Cov(β̂) the OLS sandwich under
that covariance, and a t quantile whose degrees of freedom are Satterthwaite's for σ_b² + σ_w² (close
to G − 1 when the sources differ: few sources, wide intervals). Without a detectable source effect,
or with one task per source (σ_b and σ_w not separable), the variance is the residual s² with n − 2
degrees of freedom. With one source σ_b² cannot be estimated at all (flagged).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.90  # nominal level of every prediction interval
CI_LEVEL = 0.95  # level of the correlation's confidence interval


def clip(value: float | None, low: float = 0.0, high: float = 1.0) -> float | None:
    return None if value is None else float(min(max(value, low), high))


def clip_interval(interval, low: float = 0.0, high: float = 1.0):
    """(lo, hi) clipped to [low, high]; None stays None."""
    if interval is None:
        return None
    return (clip(interval[0], low, high), clip(interval[1], low, high))


def covered(value: float, interval) -> bool:
    return interval is not None and interval[0] <= value <= interval[1]


@dataclass
class Coverage:
    """How many held-out values fell inside their intervals, and whether that is credibly below nominal."""

    hits: int
    n: int
    nominal: float = LEVEL

    @property
    def rate(self) -> float | None:
        return self.hits / self.n if self.n else None

    @property
    def p_below(self) -> float | None:
        """One-sided binomial p-value of seeing ≤ hits if the intervals covered at the nominal rate."""
        return float(stats.binom.cdf(self.hits, self.n, self.nominal)) if self.n else None

    @property
    def too_narrow(self) -> bool:
        return self.n > 0 and self.p_below < 0.05

    def text(self) -> str:
        return "–" if not self.n else f"{self.hits}/{self.n} = {self.rate:.0%}"


def coverage(values, intervals, nominal: float = LEVEL) -> Coverage:
    pairs = [(v, i) for v, i in zip(values, intervals) if i is not None]
    return Coverage(sum(covered(v, i) for v, i in pairs), len(pairs), nominal)


def variance_components(residuals, groups) -> dict:
    """σ_b², σ_w², the predictive variance σ_b² + σ_w² of a new task of a new source and its degrees of
    freedom, from residuals grouped by source (see the module doc)."""
    r = np.asarray(residuals, float)
    groups = list(groups)
    n = len(r)
    names = sorted(set(groups))
    G = len(names)
    s2 = float((r ** 2).sum() / (n - 2)) if n > 2 else None
    out = {"n": n, "groups": G, "sigma_b2": None, "sigma_w2": None, "variance": s2, "df": n - 2 if n > 2 else None,
           "between_estimable": False, "note": ""}
    if s2 is None:
        out["note"] = f"{n} task(s): no residual variance"
        return out
    if G < 2:
        out["note"] = "one source: between-source variation cannot be estimated, the interval leaves it out"
        return out
    if G == n:
        out["note"] = "one task per source: between- and within-source variation are not separable (residual s²)"
        out["between_estimable"] = True
        return out
    sizes = np.array([sum(g == name for g in groups) for name in names], float)
    means = np.array([r[[g == name for g in groups]].mean() for name in names])
    grand = r.mean()
    ms_b = float((sizes * (means - grand) ** 2).sum() / (G - 1))
    ms_w = float(sum(((r[[g == name for g in groups]] - m) ** 2).sum() for name, m in zip(names, means)) / (n - G))
    n0 = float((n - (sizes ** 2).sum() / n) / (G - 1))
    out["between_estimable"] = True
    if ms_b <= ms_w or n0 <= 1:
        out.update(sigma_b2=0.0, sigma_w2=ms_w, note="no source effect detectable: residual s²")
        return out
    sigma_b2 = (ms_b - ms_w) / n0
    a, b = ms_b / n0, ms_w * (1 - 1 / n0)
    variance = a + b
    df = variance ** 2 / (a ** 2 / (G - 1) + b ** 2 / (n - G))
    out.update(sigma_b2=float(sigma_b2), sigma_w2=ms_w, variance=float(variance), df=float(df))
    return out


@dataclass
class GroupedLine:
    """OLS y = intercept + slope·x over n tasks from ``groups`` sources, with the variance model above."""

    n: int
    groups: int
    intercept: float | None
    slope: float | None
    cov: list[list[float]] | None = None  # Cov(intercept, slope) under the random-intercept model
    sigma_b2: float | None = None
    sigma_w2: float | None = None
    variance: float | None = None  # predictive variance of a new task of a new source (before the fit's own)
    df: float | None = None
    seed_var: float | None = None  # pooled variance between seeds of one task (None: one seed each)
    mean_seeds: float = 1.0
    note: str = ""
    x_range: tuple[float, float] | None = None

    def predict(self, x0: float) -> float | None:
        if self.slope is None:
            return None
        return self.intercept + self.slope * x0

    def interval(self, x0: float, level: float = LEVEL, single_run: bool = False):
        """Unclipped (lo, hi) for a new task of a new source at x0; ``single_run`` adds the seed-to-seed
        variance of one distillation run (the points are means over seeds). None without a variance."""
        if self.slope is None or self.variance is None or self.df is None or self.df <= 0:
            return None
        v = np.array([1.0, x0])
        var = float(v @ np.asarray(self.cov) @ v) + self.variance
        if single_run and self.seed_var:
            var += self.seed_var * max(0.0, 1 - 1 / self.mean_seeds)
        half = float(stats.t.ppf(0.5 + level / 2, self.df)) * math.sqrt(max(var, 0.0))
        y0 = self.predict(x0)
        return (y0 - half, y0 + half)


def pooled_seed_variance(seed_values: list[list[float]]) -> float | None:
    """Pooled within-task variance over tasks with ≥ 2 seeds (ddof 1); None when no task has two."""
    num = sum(((np.asarray(v) - np.mean(v)) ** 2).sum() for v in seed_values if len(v) > 1)
    den = sum(len(v) - 1 for v in seed_values if len(v) > 1)
    return float(num / den) if den else None


def fit_grouped(x, y, groups, seed_values=None) -> GroupedLine:
    """The line and its variance model; slope None when fewer than 2 tasks or x is constant."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    groups = list(groups)
    n, G = len(x), len(set(groups))
    seed_values = seed_values or [[v] for v in y]
    seed_var = pooled_seed_variance(seed_values)
    mean_seeds = float(np.mean([len(v) for v in seed_values])) if seed_values else 1.0
    if n < 2 or np.ptp(x) == 0:
        return GroupedLine(n, G, None, None, note=f"{n} task(s)" + (", constant indicator" if n >= 2 else ""),
                           seed_var=seed_var, mean_seeds=mean_seeds)
    X = np.column_stack([np.ones(n), x])
    xtx_inv = np.linalg.inv(X.T @ X)
    beta = xtx_inv @ X.T @ y
    line = GroupedLine(n, G, float(beta[0]), float(beta[1]), seed_var=seed_var, mean_seeds=mean_seeds,
                       x_range=(float(x.min()), float(x.max())))
    if n < 3:
        line.note = "2 tasks: a line through them, no interval"
        return line
    comp = variance_components(y - X @ beta, groups)
    line.note = comp["note"]
    line.variance, line.df = comp["variance"], comp["df"]
    line.sigma_b2, line.sigma_w2 = comp["sigma_b2"], comp["sigma_w2"]
    if comp["sigma_b2"] is not None and comp["sigma_b2"] > 0:
        same = np.array([[gi == gj for gj in groups] for gi in groups], float)
        sigma = comp["sigma_w2"] * np.eye(n) + comp["sigma_b2"] * same
    else:
        sigma = comp["variance"] * np.eye(n)
    line.cov = (xtx_inv @ X.T @ sigma @ X @ xtx_inv).tolist()
    return line


@dataclass
class GroupedCorrelation:
    """Pearson and Spearman r over tasks, with percentile CIs from a two-stage bootstrap: sources
    resampled with replacement, then tasks within each drawn source. None where n < 4, there is one
    source, or x or y is constant."""

    n: int
    groups: int
    pearson: float | None = None
    pearson_ci: tuple[float, float] | None = None
    spearman: float | None = None
    spearman_ci: tuple[float, float] | None = None
    note: str = ""

    @property
    def excludes_zero(self) -> bool:
        return self.pearson_ci is not None and (self.pearson_ci[0] > 0 or self.pearson_ci[1] < 0)


def _rowwise_r(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))
    return np.clip(r, -1, 1)


def grouped_correlation(x, y, groups, bootstrap: int = 2000, seed: int = 0, level: float = CI_LEVEL
                        ) -> GroupedCorrelation:
    x, y = np.asarray(x, float), np.asarray(y, float)
    groups = list(groups)
    n, names = len(x), sorted(set(groups))
    out = GroupedCorrelation(n, len(names))
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        out.note = f"{n} task(s)" if n < 3 else "constant scores: no correlation"
        return out
    out.pearson = float(stats.pearsonr(x, y)[0])
    out.spearman = float(stats.spearmanr(x, y)[0])
    if n < 4 or len(names) < 2:
        out.note = "fewer than 4 tasks: no CI" if n < 4 else "one source: no CI (tasks of a source are not independent)"
        return out
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero([g == name for g in groups]) for name in names]
    samples = []
    for _ in range(bootstrap):
        drawn = rng.integers(0, len(names), len(names))
        idx = np.concatenate([rng.choice(members[d], len(members[d])) for d in drawn])
        samples.append(idx)
    lengths = {len(s) for s in samples}
    rp, rs = [], []
    for length in lengths:  # rows of equal length, vectorised
        block = np.array([s for s in samples if len(s) == length])
        bx, by = x[block], y[block]
        keep = (np.ptp(bx, 1) > 0) & (np.ptp(by, 1) > 0)
        bx, by = bx[keep], by[keep]
        if len(bx):
            rp.append(_rowwise_r(bx, by))
            rs.append(_rowwise_r(stats.rankdata(bx, axis=1), stats.rankdata(by, axis=1)))
    rp, rs = np.concatenate(rp) if rp else np.array([]), np.concatenate(rs) if rs else np.array([])
    if len(rp) < bootstrap // 2:
        out.note = "too few bootstrap resamples with a defined correlation: no CI"
        return out
    tail = 100 * (1 - level) / 2
    out.pearson_ci = (float(np.percentile(rp, tail)), float(np.percentile(rp, 100 - tail)))
    out.spearman_ci = (float(np.percentile(rs, tail)), float(np.percentile(rs, 100 - tail)))
    return out
