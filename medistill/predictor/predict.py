"""Predicted distilled score per method from the indicator and the fits of a study table."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .fit import MethodFit, best_fit, fit_table


@dataclass
class Prediction:
    """The predicted score of ``method`` at indicator value ``indicator`` (one metric)."""

    method: str
    metric: str
    indicator: float
    predicted: float | None
    interval: tuple[float, float] | None
    validated: bool
    fit_ipc: int | None  # the IPC the fit used (None: all IPCs pooled)
    points: int
    datasets: int
    lodo_mae: float | None
    note: str

    def to_dict(self) -> dict:
        return asdict(self)


def table_methods(rows: list[dict]) -> list[str]:
    """Methods with rows that can be fitted (distilled and baseline selections, not random/full)."""
    order = ["dc", "dsa", "dm", "mtt", "herding", "kcenter"]
    present = {r["method"] for r in rows if r["method"] not in ("random", "full")}
    return [m for m in order if m in present] + sorted(present - set(order))


def predict_method(fits: list[MethodFit], method: str, metric: str, ipc: int | None, indicator: float,
                   dataset: str | None = None, fitted_datasets: set[str] | None = None) -> Prediction:
    fit = best_fit(fits, method, ipc)
    if fit is None or fit.line.slope is None:
        n = 0 if fit is None else fit.line.n
        return Prediction(method, metric, indicator, None, None, False, None, n, 0 if fit is None else fit.line.datasets,
                          None, f"cannot fit {method}: {n} usable point(s) in the table (need ≥ 2 with different indicators)")
    notes = []
    interval = fit.line.interval(indicator)
    if interval is None:
        notes.append(f"only {fit.line.n} points: no interval")
    if not fit.validated:
        notes.append(f"not validated: the fit rests on {fit.line.datasets} dataset(s) (< 3); the interval only "
                     "describes those points")
    if fit.lodo.mae is not None and fit.lodo.mean_only_mae is not None and fit.lodo.mae >= fit.lodo.mean_only_mae:
        notes.append(f"leave-one-dataset-out error {fit.lodo.mae:.3f} does not beat ignoring the indicator "
                     f"({fit.lodo.mean_only_mae:.3f}): do not trust this prediction")
    if fit.ipc is None and ipc is not None:
        notes.append(f"fit pools all IPCs (fewer than 3 points at IPC {ipc})")
    if dataset is not None and fitted_datasets and dataset in fitted_datasets:
        notes.append(f"{dataset} is in the fitted table: not an out-of-sample prediction")
    return Prediction(method, metric, indicator, fit.line.predict(indicator), interval, fit.validated, fit.ipc,
                      fit.line.n, fit.line.datasets, fit.lodo.mae, "; ".join(notes))


def predict_all(rows: list[dict], methods: list[str], metric: str, ipc: int | None, indicators: dict[str, float],
                dataset: str | None = None) -> list[Prediction]:
    """``indicators``: method → indicator value measured the way that method's table rows were."""
    fits = fit_table(rows, metric)
    out = []
    for method in methods:
        fitted = {r["dataset"] for r in rows if r["method"] == method}
        out.append(predict_method(fits, method, metric, ipc, indicators[method], dataset, fitted))
    return out
