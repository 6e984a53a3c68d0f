"""The study report: a Markdown file with the results table, the fits for every metric, a scatter
plot (random-subset score vs method score, one colour per method, fitted lines, identity line) and
what the numbers can and cannot support."""
from __future__ import annotations

import math
from pathlib import Path

from ..atomic_io import _atomic, atomic_write_text
from ..study.table import METRICS
from .fit import MIN_DATASETS, fit_table, pairs_from_table

METRIC_NAMES = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "auc": "AUC"}
COLOURS = {"dc": "tab:blue", "dsa": "tab:orange", "dm": "tab:green", "mtt": "tab:red", "herding": "tab:purple",
           "kcenter": "tab:brown"}


def _f(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _pm(row: dict, prefix: str, metric: str) -> str:
    mean, std = row.get(f"{prefix}{metric}_mean"), row.get(f"{prefix}{metric}_std")
    return "–" if mean is None else f"{mean:.3f} ± {std:.3f}"


def _ci(ci) -> str:
    return "" if ci is None else f" [{ci[0]:.2f}, {ci[1]:.2f}]"


def results_table(rows: list[dict]) -> list[str]:
    order = {m: i for i, m in enumerate(["full", "random", "herding", "kcenter", "dc", "dsa", "dm", "mtt"])}
    rows = sorted(rows, key=lambda r: (r["dataset"], r["ipc"] or 0, order.get(r["method"], 99), r["seed"]))
    lines = ["| dataset | method | IPC | seed | accuracy | balanced acc. | AUC | random subset acc. | random bal. acc. "
             "| random AUC | majority | networks × epochs | reused | seconds |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['method']} | {r['ipc'] if r['ipc'] is not None else 'all'} | {r['seed']} | "
            f"{_pm(r, '', 'accuracy')} | {_pm(r, '', 'balanced_accuracy')} | {_pm(r, '', 'auc')} | "
            f"{_pm(r, 'random_', 'accuracy')} | {_pm(r, 'random_', 'balanced_accuracy')} | {_pm(r, 'random_', 'auc')} | "
            f"{_f(r.get('majority_rate'))} | {r.get('eval_models')} × {r.get('eval_epochs')}"
            f"{' DSA' if r.get('eval_augment') else ''} | {'yes' if r.get('reused') else 'no'} | "
            f"{_f(r.get('wall_seconds'), 0)} |")
    return lines


def fits_table(rows: list[dict], metric: str) -> list[str]:
    lines = ["| method | IPC | n | datasets | Pearson r [95% CI] | Spearman ρ [95% CI] | slope | intercept "
             "| residual s | LODO MAE | LODO MAE, mean only | validated |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for f in fit_table(rows, metric):
        c, line = f.correlation, f.line
        lines.append(
            f"| {f.method} | {'all' if f.ipc is None else f.ipc} | {c.n} | {line.datasets} | "
            f"{_f(c.pearson, 2)}{_ci(c.pearson_ci)} | {_f(c.spearman, 2)}{_ci(c.spearman_ci)} | "
            f"{_f(line.slope, 2)} | {_f(line.intercept, 2)} | {_f(line.residual_std)} | {_f(f.lodo.mae)} | "
            f"{_f(f.lodo.mean_only_mae)} | "
            f"{'yes' if f.validated else 'no'} |")
    return lines


def validity_statements(rows: list[dict]) -> list[str]:
    datasets = sorted({r["dataset"] for r in rows})
    pairs = pairs_from_table(rows, "accuracy")
    out = [f"- The table holds {len(rows)} finished cells from {len(datasets)} dataset(s) ({', '.join(datasets)}); "
           f"{len(pairs)} of them pair a method's score with the random-subset score at the same IPC.",
           f"- A fit is called validated only when its points come from at least {MIN_DATASETS} distinct datasets "
           "and a leave-one-dataset-out error could be computed; that is a minimum for any claim, not evidence that the error is small. Correlations are not reported from fewer than 3 "
           "points (two points always lie on a line) and carry no bootstrap CI below 4 points."]
    for f in fit_table(rows, "accuracy"):
        if f.ipc is not None:
            continue
        if f.validated:
            verdict = ("the indicator beats ignoring it" if f.lodo.mae < f.lodo.mean_only_mae
                       else "**the indicator does not beat ignoring it**")
            out.append(f"- {f.method}: {f.line.n} points from {f.line.datasets} datasets; leave-one-dataset-out mean "
                       f"absolute error {_f(f.lodo.mae)} (accuracy) vs {_f(f.lodo.mean_only_mae)} predicting the other "
                       f"datasets' mean: {verdict}. Each held-out fit rests on {f.line.datasets - 1} datasets, "
                       "so this is a weak check.")
        else:
            out.append(f"- {f.method}: {f.line.n} point(s) from {f.line.datasets} dataset(s): **not validated**; "
                       "any line or interval only describes these points.")
    if any(r["method"] == "herding" and r["ipc"] == 1 for r in rows) and any(
            r["method"] == "kcenter" and r["ipc"] == 1 for r in rows):
        out.append("- At IPC 1 herding and k-center pick the same image (both start from the sample nearest the "
                   "class mean), so their IPC 1 rows coincide: they are not independent evidence.")
    presets = sorted({str(r.get("preset")) for r in rows})
    out += [f"- Budget(s): {', '.join(presets)}. The quick preset distils for minutes on a CPU, far below the "
            "published budgets, and scores each set with 3 networks × 300 epochs: these are small-budget results, "
            "not a reproduction of the paper's numbers.",
            "- On imbalanced test splits accuracy can look good for a model that predicts the majority class "
            "(BreastMNIST: majority rate 0.731); read balanced accuracy and AUC beside it.",
            "- 'simulation' is a constructed dataset (each MedMNIST file one class, grayscale repeated into 3 "
            "channels, at most 300/50/150 images per class): its classes differ by organ and modality, so it is "
            "far easier than a real diagnostic task."]
    return out


def scatter_plot(rows: list[dict], path) -> Path:
    """One panel per metric: random-subset score (x) vs method score (y), fitted line per method, y = x."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(5 * len(METRICS), 4.6))
    markers = {}
    for ax, metric in zip(axes, METRICS):
        pairs = pairs_from_table(rows, metric)
        fits = {f.method: f for f in fit_table(rows, metric) if f.ipc is None}
        ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="y = x")
        for method in sorted({p.method for p in pairs}):
            own = [p for p in pairs if p.method == method]
            colour = COLOURS.get(method, "black")
            for p in own:
                marker = markers.setdefault(p.dataset, "osD^v<>p*h"[len(markers) % 10])
                ax.scatter(p.x, p.y, color=colour, marker=marker, s=40, zorder=3)
            fit = fits.get(method)
            if fit is not None and fit.line.slope is not None:
                xs = [min(p.x for p in own), max(p.x for p in own)]
                ax.plot(xs, [fit.line.predict(x) for x in xs], color=colour, linewidth=1.5,
                        linestyle="-" if fit.validated else ":")
            ax.plot([], [], color=colour, linewidth=3, label=method)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xlabel(f"random real subset, {METRIC_NAMES[metric]}")
        ax.set_ylabel(f"method, {METRIC_NAMES[metric]}")
        ax.set_title(f"{METRIC_NAMES[metric]} ({len(pairs)} points)")
        ax.grid(alpha=0.3)
    for dataset, marker in markers.items():
        axes[-1].scatter([], [], color="black", marker=marker, label=dataset)
    axes[-1].legend(loc="lower right", fontsize=8)
    fig.suptitle("Does the random-subset score predict the method's score? (solid: validated fit; dotted: not)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path


def write_report(rows: list[dict], out_dir, table_path: str, command: str = "") -> tuple[Path, Path]:
    """``out_dir/report.md`` and ``out_dir/scatter.png``; returns both paths."""
    if not rows:
        raise ValueError(f"the study table {table_path} has no rows yet: run `medistill study` first")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = scatter_plot(rows, out_dir / "scatter.png")
    lines = ["# Predicting distillation success: study report", "",
             f"Table: `{table_path}` ({len(rows)} cells). "
             + (f"Generated by `{command}`." if command else ""), "",
             "Each point pairs a method's score on a dataset at an IPC with the score of networks trained on a "
             "random real subset with the same images per class, under the same evaluation protocol (with DSA "
             "training when the method's set is scored with it).", "",
             "## What these numbers can support", "", *validity_statements(rows), "",
             "## Results", "", *results_table(rows), ""]
    for metric in METRICS:
        lines += [f"## Random subset → method score: {METRIC_NAMES[metric]}", "", *fits_table(rows, metric), ""]
    lines += ["LODO MAE: fit the line without one dataset, predict that dataset's points, mean absolute error "
              "over held-out datasets; 'mean only' predicts the other datasets' mean score instead (no indicator). Pearson/Spearman CIs: percentile bootstrap over points (2000 resamples).", "",
              "## Scatter", "", f"![random subset vs method score]({png.name})", ""]
    md = atomic_write_text(out_dir / "report.md", "\n".join(lines))
    return md, png
