"""The study report: Markdown (the evidence, the fits, leave-one-source-out, what is validated and why
not), a scatter per method (indicator vs score, coloured by source, with the fitted line and its
interval band) and a held-out calibration plot (leave-one-source-out prediction vs measured score,
with the intervals). PNGs via matplotlib's Agg backend."""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..atomic_io import atomic_write, atomic_write_text
from .fit import (DEFAULT_METRIC, METRICS, MIN_SOURCES, MethodFit, fit_table, is_evidence, ordered_methods,
                  resolve_preset, row_source, table_presets)
from .stats import LEVEL, clip

METRIC_NAMES = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "auc": "AUC"}
SOURCE_COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink",
                  "tab:olive", "tab:cyan"]


def _f(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _sd(var) -> str:
    return "–" if var is None else f"{math.sqrt(max(var, 0.0)):.3f}"


def _ci(ci) -> str:
    return "" if ci is None else f" [{ci[0]:.2f}, {ci[1]:.2f}]"


def source_colours(rows: list[dict]) -> dict[str, str]:
    names = sorted({row_source(r) for r in rows}, key=lambda s: ("+" in s, s))
    return {s: SOURCE_COLOURS[i % len(SOURCE_COLOURS)] for i, s in enumerate(names)}


def fits_table(fits: list[MethodFit]) -> list[str]:
    lines = [f"| method | IPC | tasks | sources | Pearson r [95% CI, sources resampled] | slope | intercept "
             f"| σ between sources | σ within | σ seeds | held-out MAE | MAE, mean only | MAE, y = x "
             f"| held-out coverage ({LEVEL:.0%}) | validated |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for f in fits:
        c, line, loso = f.correlation, f.line, f.loso
        verdict = "**yes**" if f.validated else "no: " + "; ".join(f.reasons)
        if f.validated and f.identity_predicts_better:
            verdict += " (but y = x predicts better)"
        lines.append(
            f"| {f.method} | {f.ipc} | {f.tasks} | {len(f.sources)} | {_f(c.pearson, 2)}{_ci(c.pearson_ci)} | "
            f"{_f(line.slope, 2)} | {_f(line.intercept, 2)} | {_sd(line.sigma_b2)} | {_sd(line.sigma_w2)} | "
            f"{_sd(line.seed_var)} | {_f(loso.mae)} | {_f(loso.mae_mean_only)} | {_f(loso.mae_identity)} | "
            f"{loso.coverage.text()} | {verdict} |")
    return lines


def loso_table(fits: list[MethodFit]) -> list[str]:
    sources = sorted({s for f in fits for s in f.loso.folds})
    lines = ["| method | IPC | " + " | ".join(sources) + " |", "|---|---|" + "---|" * len(sources)]
    for f in fits:
        per = f.loso.per_source()
        cells = []
        for s in sources:
            fold = f.loso.folds.get(s, {})
            if s in per:
                cells.append(f"{per[s]['mae']:.3f} ({per[s]['covered']}/{per[s]['with_interval']} in)")
            else:
                cells.append("skipped" if "skipped" in fold else "–")
        lines.append(f"| {f.method} | {f.ipc} | " + " | ".join(cells) + " |")
    return lines


def gain_table(fits: list[MethodFit]) -> list[str]:
    """Per fit: the gain over the indicator on its evidence tasks (mean, range) and on how many tasks the
    method scores above the indicator, and above it by more than the subsets' spread."""
    lines = ["| method | IPC | tasks | gain over the indicator, mean (min … max) | above the indicator "
             "| above it by more than the subsets' spread |", "|---|---|---|---|---|---|"]
    for f in fits:
        gains = f.gains
        if not gains:
            continue
        clear = sum(p.x_spread is not None and p.y - p.x > p.x_spread for p in f.evidence)
        lines.append(f"| {f.method} | {f.ipc} | {len(gains)} | {np.mean(gains):+.3f} ({min(gains):+.3f} … "
                     f"{max(gains):+.3f}) | {f.tasks_above_indicator}/{len(gains)} | {clear}/{len(gains)} |")
    return lines


def identity_notes(fits: list[MethodFit]) -> list[str]:
    """A sentence per validated fit whose line predicts held-out tasks worse than y = x."""
    out = []
    for f in fits:
        if f.validated and f.identity_predicts_better:
            gains = f.gains
            out.append(f"{f.method} at IPC {f.ipc}: y = x (\"as good as a random subset\") predicts the held-out tasks "
                       f"better than the line (MAE {f.loso.mae_identity:.3f} against {f.loso.mae:.3f}); its mean gain "
                       f"over the indicator is {np.mean(gains):+.3f}, above it on {f.tasks_above_indicator} of "
                       f"{len(gains)} tasks. Read its line as \"about what random real images give\".")
    return out


def coinciding_methods(rows: list[dict]) -> list[tuple[str, str, int, int]]:
    """(method a, method b, IPC, shared tasks) for every pair of methods whose scores are equal on every task
    and seed they share at that IPC (two or more tasks)."""
    scores = defaultdict(dict)  # (method, ipc) -> {(dataset, seed): score}
    for r in rows:
        if r.get("method") not in (None, "random", "full"):
            scores[(r["method"], int(r["ipc"]))][(r["dataset"], r.get("seed"))] = r.get("balanced_accuracy_mean")
    out = []
    keys = sorted(scores, key=lambda k: (k[1], k[0]))
    for i, (a, ipc) in enumerate(keys):
        for b, ipc_b in keys[i + 1:]:
            shared = scores[(a, ipc)].keys() & scores[(b, ipc_b)].keys()
            if ipc == ipc_b and len({d for d, _ in shared}) >= 2 and all(
                    scores[(a, ipc)][k] == scores[(b, ipc)][k] for k in shared):
                out.append((a, b, ipc, len({d for d, _ in shared})))
    return out


def cost_line(rows: list[dict]) -> str:
    """What the cells cost: their wall times summed, in total and per method (the study runs one thread each)."""
    per_method = defaultdict(float)
    for r in rows:
        try:
            per_method[r["method"]] += float(r.get("wall_seconds") or 0.0)
        except (TypeError, ValueError):
            continue
    total = sum(per_method.values())
    reused = sum(str(r.get("reused")).lower() == "true" for r in rows)
    hosts = sorted({str(r["host"]) for r in rows if r.get("host")})
    parts = ", ".join(f"{m} {per_method[m] / 3600:.2f} h" for m in ordered_methods(per_method) if m in per_method)
    return (f"- Cost: the cells' wall times sum to {total / 3600:.1f} h ({parts}) on {', '.join(hosts) or '?'}, "
            "each cell at one thread unless the study was run otherwise; work shared by a task's cells (its "
            "indicator subsets, the embedding network herding and k-center select with) counts in the cell that "
            "did it first"
            + (f"; {reused} cell(s) reused finished runs and count only their recorded time" if reused else "") + ".")


def evidence_lines(rows: list[dict], preset: str | None) -> list[str]:
    mine = [r for r in rows if str(r.get("preset")) == str(preset)]
    by_source = defaultdict(set)
    for r in mine:
        by_source[row_source(r)].add(r["dataset"])
    singles = [s for s in by_source if "+" not in s]
    lines = [f"- Budget preset `{preset}`: {len(mine)} cells, {sum(len(v) for v in by_source.values())} tasks from "
             f"{len(singles)} source(s) and {len(by_source) - len(singles)} task(s) built from several sources."]
    for source in sorted(by_source, key=lambda s: ("+" in s, s)):
        lines.append(f"  - **{source}**: {', '.join(f'`{t}`' for t in sorted(by_source[source]))}")
    seeds = defaultdict(set)
    for r in mine:
        seeds[r["method"]].add(r.get("seed"))
    lines.append("- Seeds per method: " + ", ".join(f"{m} {len(seeds[m])}" for m in ordered_methods(seeds)
                                                      if m in seeds) + ".")
    for a, b, ipc, tasks in coinciding_methods(mine):
        why = (" (both start from the image nearest the class mean, so at IPC 1 they pick the same image)"
               if {a, b} == {"herding", "kcenter"} and ipc == 1 else "")
        lines.append(f"- {a} and {b} at IPC {ipc} score the same on all {tasks} shared tasks{why}: their fits "
                     "are one piece of evidence, not two.")
    subsets = sorted({r.get("random_subsets") for r in mine if r.get("random_subsets") is not None})
    plain = [r for r in mine if r.get("method") == "random"] or [r for r in mine if not r.get("eval_augment")] or mine
    models = sorted({(r.get("eval_models"), r.get("eval_epochs")) for r in plain
                     if r.get("eval_models") is not None and r.get("eval_epochs") is not None})
    lines.append(f"- Indicator: the mean over R = {', '.join(map(str, subsets)) or '?'} random real subsets at the "
                 f"same IPC, each scored by {', '.join(f'{m} network(s) × {e} epochs' for m, e in models) or '?'} "
                 "(the real-image recipe: no augmentation), with its spread over the subsets; one indicator per task "
                 "and IPC, shared by every method and seed.")
    lines.append(cost_line(mine))
    others = [p for p in table_presets(rows) if p != str(preset)]
    if others:
        lines.append(f"- Rows of other presets ({', '.join(others)}) are not used: budgets are never pooled.")
    return lines


DESIGN = [
    "- **Unit of evidence**: a task (a source's classes chosen or merged, or the simulation set). Each fit has one "
    "point per task: x = the task's indicator, y = the method's score averaged over its seeds.",
    "- **One fit per method and IPC** (not IPC as a covariate): the gain over random images shrinks with IPC, so "
    "intercept and slope both differ by IPC, and two IPC levels cannot check a shared slope; each IPC has its own "
    "tasks.",
    "- **Line and intervals**: least squares over tasks; a random source effect (tasks of one source share it) and "
    "a task effect estimated from the residuals by the one-way ANOVA method of moments; the nominal "
    f"{LEVEL:.0%} prediction interval for a new task from a new source adds both to the fit's own uncertainty and "
    "uses Satterthwaite's degrees of freedom (about the number of sources − 1 when sources differ); `predict` also "
    "adds the seed-to-seed variance of one run. Predictions and intervals are clipped to [0, 1].",
    "- **Correlation CI**: percentile bootstrap resampling sources, then tasks within each drawn source, so the "
    "tasks of one source are not counted as independent evidence.",
    "- **Evidence: single-source tasks.** The simulation task (each class from a different source) is measured and "
    "shown (hollow in the scatter) but is in no line, correlation or fold, and not counted in the tasks and "
    "sources columns: it shares images with every source, so it is not an independent cluster, and as by far the "
    "easiest task it would pull the end of every line and correlation without any fold able to check that pull.",
    "- **Leave-one-source-out**: every task of a source held out, the line fitted on the tasks of the other "
    "sources, the held-out tasks predicted. Its MAE is shown next to two predictors that ignore the indicator: "
    "the training tasks' mean score and y = x (\"as good as a random subset\").",
    f"- **Validated** only when: tasks from ≥ {MIN_SOURCES} sources; every source held out once; the correlation's "
    "95% CI excludes 0; held-out MAE below the mean-only predictor's; an interval for every held-out task, and "
    f"held-out coverage not credibly below {LEVEL:.0%} (one-sided binomial p ≥ 0.05). Otherwise **not validated**, with the reasons.",
]


def results_table(rows: list[dict], preset: str | None, metric: str) -> list[str]:
    mine = [r for r in rows if str(r.get("preset")) == str(preset) and r.get("ipc") is not None]
    cells = defaultdict(list)
    for r in mine:
        cells[(row_source(r), r["dataset"], r["ipc"], r["method"])].append(r)
    lines = [f"| source | task | classes | IPC | method | seeds | {METRIC_NAMES[metric]} (mean ± sd over seeds) "
             f"| indicator ± spread | gain |", "|---|---|---|---|---|---|---|---|---|"]
    order = {m: i for i, m in enumerate(["random"] + ordered_methods({k[3] for k in cells}))}
    for key in sorted(cells, key=lambda k: ("+" in k[0], k[0], k[1], k[2], order.get(k[3], 99))):
        group = cells[key]
        ys = [r.get(f"{metric}_mean") for r in group if r.get(f"{metric}_mean") is not None]
        x = group[0].get(f"random_{metric}_mean")
        spread = group[0].get(f"random_{metric}_spread")
        score = "–" if not ys else f"{np.mean(ys):.3f} ± {np.std(ys):.3f}"
        gain = "–" if not ys or x is None or key[3] == "random" else f"{np.mean(ys) - x:+.3f}"
        lines.append(f"| {key[0]} | `{key[1]}` | {group[0].get('classes') or '–'} | {key[2]} | {key[3]} | {len(group)} "
                     f"| {score} | {_f(x)} ± {_f(spread)} | {gain} |")
    return lines


def _grid(fits: list[MethodFit]):
    methods = ordered_methods({f.method for f in fits})
    ipcs = sorted({f.ipc for f in fits})
    return methods, ipcs, {(f.method, f.ipc): f for f in fits}


def _save(fig, path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
    return path


def _panels(fits: list[MethodFit]):
    """A figure with a panel per method (columns) and IPC (rows), each with the y = x diagonal drawn; the panels
    as (bottom row?, first column?, ipc, method, axes, fit or None)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods, ipcs, by_key = _grid(fits)
    fig, axes = plt.subplots(len(ipcs), len(methods), figsize=(3.2 * len(methods), 3.3 * len(ipcs)), squeeze=False)
    panels = []
    for i, ipc in enumerate(ipcs):
        for j, method in enumerate(methods):
            ax = axes[i][j]
            ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=0.8)
            panels.append((i == len(ipcs) - 1, j == 0, ipc, method, ax, by_key.get((method, ipc))))
    return fig, panels


def _finish_panel(ax, bottom: bool, left: bool, xlabel: str, ylabel: str) -> None:
    """Unit axes, grid, small ticks; the x label on the bottom row, the y label in the first column."""
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=7)
    if bottom:
        ax.set_xlabel(xlabel, fontsize=8)
    if left:
        ax.set_ylabel(ylabel, fontsize=8)


def _finish_figure(fig, colours: dict[str, str], path, title: str) -> Path:
    """The source legend below the panels, the title above, then the PNG at ``path``."""
    import matplotlib.pyplot as plt

    handles = [plt.Line2D([], [], marker="o", linestyle="", color=c, label=s) for s, c in colours.items()]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.94))
    return _save(fig, path)


def scatter_plot(fits: list[MethodFit], colours: dict[str, str], path, metric: str) -> Path:
    """A panel per method (columns) and IPC (rows): task points coloured by source, seeds as small dots,
    the fitted line with its interval band (solid: validated, dotted: not), y = x dashed."""
    fig, panels = _panels(fits)
    for bottom, left, ipc, method, ax, f in panels:
        if f is None:
            ax.set_title(f"{method}, IPC {ipc}: no tasks", fontsize=9)
            continue
        for p in f.points:
            c = colours.get(p.source, "black")
            shown_only = not is_evidence(p)  # built from several sources: drawn hollow, in no fit
            ax.scatter([p.x] * len(p.seeds), p.seeds, color=c, s=6, alpha=0.4, zorder=2)
            ax.scatter(p.x, p.y, s=28, zorder=3, **({"facecolor": "none", "edgecolor": c, "linewidth": 1.2}
                                                   if shown_only else {"color": c, "edgecolor": "black",
                                                                       "linewidth": 0.4}))
        line = f.line
        if line.slope is not None:
            xs = np.linspace(*line.x_range, 30)
            ax.plot(xs, [clip(line.predict(x)) for x in xs], color="black", linewidth=1.4,
                    linestyle="-" if f.validated else ":")
            bands = [line.interval(x) for x in xs]
            if all(b is not None for b in bands):
                ax.fill_between(xs, [clip(b[0]) for b in bands], [clip(b[1]) for b in bands], color="0.5",
                                alpha=0.15, linewidth=0)
        c = f.correlation
        ax.set_title(f"{method}, IPC {ipc}: r {_f(c.pearson, 2)}{_ci(c.pearson_ci)}\n"
                     f"{'validated' if f.validated else 'not validated'} ({f.tasks} tasks)", fontsize=8)
        _finish_panel(ax, bottom, left, f"indicator (random subsets, {METRIC_NAMES[metric]})",
                      f"method's {METRIC_NAMES[metric]}")
    return _finish_figure(fig, colours, path, f"Indicator vs score per method ({METRIC_NAMES[metric]})\nband: "
                          f"{LEVEL:.0%} interval for a new task of a new source; line solid if validated, dotted if "
                          "not; hollow: a task built from several sources, in no fit")


def calibration_plot(fits: list[MethodFit], colours: dict[str, str], path, metric: str) -> Path:
    """Leave-one-source-out: predicted (x, with its interval as a horizontal bar) vs measured (y)."""
    fig, panels = _panels(fits)
    for bottom, left, ipc, method, ax, f in panels:
        held = f.loso.evaluated if f is not None else []
        for h in held:
            c = colours.get(h.source, "black")
            if h.interval is not None:
                ax.plot(h.interval, [h.y, h.y], color=c, alpha=0.5, linewidth=1.2)
            ax.scatter(h.predicted, h.y, color=c, s=24, edgecolor="black", linewidth=0.4, zorder=3)
        cov = f.loso.coverage if f is not None else None
        ax.set_title(f"{method}, IPC {ipc}: held-out MAE {_f(f.loso.mae if f else None)}\n"
                     f"coverage {cov.text() if cov else '–'}", fontsize=8)
        _finish_panel(ax, bottom, left, "predicted, source left out", f"measured {METRIC_NAMES[metric]}")
    return _finish_figure(fig, colours, path, f"Leave-one-source-out calibration ({METRIC_NAMES[metric]})\nbars: "
                          f"nominal {LEVEL:.0%} intervals")


def write_report(rows: list[dict], out_dir, table_path: str, metric: str = DEFAULT_METRIC, preset: str | None = None,
                 command: str = "") -> dict[str, Path]:
    """``report.md``, ``scatter.png`` and ``calibration.png`` in ``out_dir``; returns their paths."""
    if not rows:
        raise ValueError(f"the study table {table_path} has no rows yet: run `medistill study` first")
    preset = resolve_preset(rows, preset)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fits = {m: fit_table(rows, m, preset) for m in METRICS}
    primary = fits[metric]
    colours = source_colours([r for r in rows if str(r.get("preset")) == str(preset)])
    scatter = scatter_plot(primary, colours, out_dir / "scatter.png", metric) if primary else None
    calibration = calibration_plot(primary, colours, out_dir / "calibration.png", metric) if primary else None
    validated = [f for f in primary if f.validated]
    lines = ["# Predicting distillation success: study report", "",
             f"Table: `{table_path}` ({len(rows)} cells). " + (f"Generated by `{command}`." if command else ""), "",
             "Claim under test: the score of a few random real images per class (the *indicator*) predicts the score "
             "a distillation method (or a selection of real images) reaches on the same task at the same IPC.", "",
             "## Verdict", ""]
    if not primary:
        lines.append("No fit: the table has no method rows with an indicator for this preset.")
    elif validated:
        lines.append(f"Validated on {METRIC_NAMES[metric]}: " + ", ".join(f"{f.method} at IPC {f.ipc}" for f in validated)
                     + ". Every other fit is **not validated** (reasons in the table below).")
        notes = identity_notes(validated)
        lines += ["", *(f"- {note}" for note in notes)] if notes else []
    else:
        lines.append(f"**Not validated**: no fit on {METRIC_NAMES[metric]} passes the rule below. The reasons, per "
                     "fit, are in the last column of the table.")
    lines += ["", "## The evidence", "", *evidence_lines(rows, preset), "", "## Design", "", *DESIGN, "",
              f"## Fits: {METRIC_NAMES[metric]} (the primary metric)", "", *fits_table(primary), "",
              "σ between sources / within / seeds: standard deviations of the source effect, of the task effect and "
              "between seeds of one task. MAE, mean only: predicting each held-out task by the training tasks' mean "
              "score; MAE, y = x: predicting it by its own indicator.", "",
              "### Leave-one-source-out, per held-out source", "",
              "Mean absolute error of the held-out tasks (how many fell inside their intervals).", "",
              *loso_table(primary), "",
              "### Does it pay off? Gain over random real images", "",
              "Gain: the method's score (mean over seeds) minus the task's indicator (random real subsets of the same "
              "size), on the single-source tasks; spread: the indicator's spread over its subsets.", "",
              *gain_table(primary), "",
              "## Figures", ""]
    if scatter is not None:
        lines += [f"![indicator vs score]({scatter.name})", "", f"![held-out calibration]({calibration.name})", ""]
    for other in METRICS:
        if other != metric:
            lines += [f"## Fits: {METRIC_NAMES[other]}", "", *fits_table(fits[other]), ""]
    lines += [f"## Results ({METRIC_NAMES[metric]})", "", *results_table(rows, preset, metric), "",
              "## Caveats", "",
              "- Tasks of one source share images, labels, acquisition and the test split's make-up; the fits treat "
              "them as correlated (a source effect), and the number of independent sources, not of tasks, bounds "
              "what can be claimed.",
              "- The simulation task (each class a different source) is far easier than any diagnostic task.",
              "- Small budgets: scores are of this preset's distillation and evaluation budget, not the published "
              "ones.",
              "- Accuracy on imbalanced test splits flatters majority-class models; balanced accuracy is the primary "
              "metric for that reason."]
    md = atomic_write_text(out_dir / "report.md", "\n".join(lines) + "\n")
    return {"report": md, **({"scatter": scatter, "calibration": calibration} if scatter is not None else {})}
