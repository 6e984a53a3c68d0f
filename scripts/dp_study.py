"""DP-DM evidence (issue #23, docs/privacy.md): accuracy and membership leakage against the privacy budget.

Cells: {breastmnist, retinamnist, brain MRI image folder} × ε ∈ {1, 2, 4, 8, ∞} × seeds {0, 1, 2}, IPC 10.

* ``dpdm``: ``medistill distill --method dm --dp-epsilon ε`` (ε = ∞: the same noise-initialised DM with neither
  clipping nor noise, ``--set init=noise``), scored with ``medistill evaluate`` (accuracy, balanced accuracy,
  AUC on the test split) and audited (:func:`medistill.audit.run_audit`: the membership-inference AUC of
  networks trained on the set, real training split vs real test split).
* ``dpsgd``: the baseline that spends the same ε on the real data directly: a ConvNet (unfused blocks, which
  Opacus's per-sample gradients support) trained with DP-SGD (Opacus ``make_private_with_epsilon``, RDP
  accountant, Poisson batches, clip 1.0, δ = 1/(10·N) like DP-DM), scored on the same test split.

* ``random``: the non-private comparison, one cell per dataset: R = 5 random real subsets at the same IPC
  (``medistill baseline --selector random``), scored with the same budget; it spends no ε.

Resumable: a cell whose ``results/dp/<dataset>-<kind>-eps<ε>-s<seed>.json`` exists is skipped; a DP-DM run
continues its run folder (``runs/dp/…``, ``--resume-or-start``), and its evaluation and audit JSONs are kept
in the run folder, so a killed study restarts where it stopped.

    python scripts/dp_study.py run                               # the whole grid (see the cost below)
    python scripts/dp_study.py run --datasets breastmnist --epsilons 4 --seeds 0 --iterations 20 \\
        --eval-models 1 --eval-epochs 20 --mia-models 1 --mia-epochs 10 --dpsgd-epochs 1   # one small cell
    python scripts/dp_study.py table                             # results/dp/TABLE.md
    python scripts/dp_study.py plot                              # results/dp/dp_vs_epsilon.png

Cost on this 2-core CPU at the defaults (400 DM iterations, batch_real 64, 3 × 300 evaluation epochs, audit
with 2 × 100 epochs, DP-SGD 10 epochs), measured on seed 0 of the grid (one thread a cell, two cells at a time):
a DP-DM cell (distil + evaluate + audit) about 2 min on BreastMNIST, 5 min on RetinaMNIST and 4–5 min on the
brain MRI folder (5,708 images, 4 classes; the first audit of a dataset also trains the cached embedding
network); a DP-SGD cell 0.7 / 1.5 / 8 min; the random-subset cells 4 / 9 / 7 min. One seed of the grid
(15 DP-DM + 15 DP-SGD cells) is about 2.2 CPU-hours, the whole grid about 7: an hour of wall time a seed
with two processes, e.g. ``xargs -P 2`` over one ``run --datasets D --kinds K --epsilons E --seeds S`` line
a cell. Minutes on a GPU (``--device cuda``).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MEDISTILL = [sys.executable, "-m", "medistill"]
DATASETS = ("breastmnist", "retinamnist", "brain_mri")


def dataset_args(name: str) -> list[str]:
    """The ``--dataset`` arguments of a dataset; the brain MRI folder is found like the study's ``brain``
    source ($MEDISTILL_BRAIN_MRI, else beside the MedMNIST data root)."""
    if name == "brain_mri":
        from medistill.study.tasks import folder_source_path

        return ["--dataset", str(folder_source_path("brain")), "--size", "28"]
    return ["--dataset", name]


EPSILONS = ("1", "2", "4", "8", "inf")


def _eps_name(eps: str) -> str:
    return "inf" if math.isinf(float(eps)) else f"{float(eps):g}"


def _sh(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)


def _load(name: str):
    from medistill.data import load_dataset

    args = dataset_args(name)
    size = int(args[args.index("--size") + 1]) if "--size" in args else 28
    return load_dataset(args[1], size=size)


def audit_config(args, seed: int):
    """The audit every DP-DM set gets (its membership attack included); ``args`` from the ``run`` parser."""
    from medistill.audit import AuditConfig, MembershipConfig

    return AuditConfig(embed_epochs=args.embed_epochs, seed=seed, device=args.device,
                       membership=MembershipConfig(num_models=args.mia_models, epochs=args.mia_epochs, seed=seed),
                       cache_dir=str(Path(args.runs) / ".audit-cache"))


def distill_command(data: list[str], eps: str, seed: int, args, run: Path) -> list[str]:
    """The study's DP-DM distillation (``data``: the ``--dataset …`` arguments; ε = ∞: the same noise-initialised
    DM with neither clipping nor noise), resuming ``run`` if it was started."""
    private = not math.isinf(float(eps))
    return (MEDISTILL + ["distill", *data, "--method", "dm", "--ipc", str(args.ipc), "--preset", "quick",
                         "--iterations", str(args.iterations), "--seed", str(seed), "--eval-models", "0",
                         "--threads", str(args.threads), "--device", args.device, "--out", str(run),
                         "--resume-or-start"]
            + (["--dp-epsilon", eps] if private else ["--set", "init=noise"]))


def dpdm_cell(name: str, eps: str, seed: int, args, out: Path) -> dict:
    run = Path(args.runs) / f"{name}-dpdm-eps{_eps_name(eps)}-ipc{args.ipc}-s{seed}"
    started = time.time()
    if not (run / "synthetic_set.pt").exists():
        _sh(distill_command(dataset_args(name), eps, seed, args, run))
    scores = run / "evaluate.json"
    if not scores.exists():
        _sh(MEDISTILL + ["evaluate", str(run), "--models", str(args.eval_models), "--epochs", str(args.eval_epochs),
                         "--seed", str(seed), "--threads", str(args.threads), "--device", args.device,
                         "--json", str(scores)])
    audit_path = run / "audit-summary.json"
    if not audit_path.exists():
        import torch

        from medistill.audit import run_audit
        from medistill.data import ImageSet

        torch.set_num_threads(args.threads)
        dataset = _load(name)
        result = run_audit(ImageSet.load(run / "synthetic_set.pt"), dataset, audit_config(args, seed), progress=False)
        audit_path.write_text(json.dumps(result.summary, indent=1))
    score = json.loads(scores.read_text())["summary"]
    audit = json.loads(audit_path.read_text())
    meta = json.loads((run / "config.json").read_text())
    mi = audit["membership_inference"] or {}
    return {"dataset": name, "kind": "dpdm", "epsilon": float(eps), "seed": seed, "ipc": args.ipc,
            "iterations": args.iterations, "run": str(run),
            "accuracy": score["accuracy"]["mean"], "balanced_accuracy": score["balanced_accuracy"]["mean"],
            "auc": score["auc"]["mean"], "mia_auc": mi.get("attack_auc"), "mia_targeted_auc": mi.get("targeted_attack_auc"),
            "flagged": audit["flagged"], "privacy": meta.get("privacy"),
            "evaluation": {"models": args.eval_models, "epochs": args.eval_epochs},
            "seconds_this_session": round(time.time() - started, 1)}


def dpsgd_cell(name: str, eps: str, seed: int, args, out: Path) -> dict:
    import numpy as np
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from medistill.evaluate.metrics import classification_metrics
    from medistill.evaluate.train import predict_proba
    from medistill.models.convnet import ConvNet
    from medistill.privacy import default_delta

    torch.set_num_threads(args.threads)
    started = time.time()
    dataset = _load(name)
    torch.manual_seed(seed)  # this script's own process: the network's initialisation and the batches
    x = dataset.images("train")[:].float()
    y = dataset.train_labels.reshape(-1).long()
    model = ConvNet(dataset.channels, dataset.num_classes, dataset.image_size, fused_blocks=False).to(args.device)
    for module in model.modules():  # Opacus's per-sample hooks forbid in-place activations
        if isinstance(module, torch.nn.ReLU):
            module.inplace = False
    optimizer = torch.optim.SGD(model.parameters(), lr=args.dpsgd_lr, momentum=0.9)
    loader = DataLoader(TensorDataset(x, y), batch_size=args.dpsgd_batch, shuffle=True)
    private = not math.isinf(float(eps))
    record = None
    if private:
        from opacus import PrivacyEngine

        delta = default_delta(len(y))
        engine = PrivacyEngine(accountant="rdp")
        model, optimizer, loader = engine.make_private_with_epsilon(
            module=model, optimizer=optimizer, data_loader=loader, target_epsilon=float(eps), target_delta=delta,
            epochs=args.dpsgd_epochs, max_grad_norm=args.dpsgd_clip)
        record = {"delta": delta, "noise_multiplier": optimizer.noise_multiplier, "clip": args.dpsgd_clip,
                  "expected_batch": args.dpsgd_batch}
    model.train()
    for _ in range(args.dpsgd_epochs):
        for xb, yb in loader:
            if len(xb) == 0:  # a Poisson batch may be empty
                continue
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(xb.to(args.device)), yb.to(args.device)).backward()
            optimizer.step()
    if private:
        record["epsilon_spent"] = engine.get_epsilon(record["delta"])
    proba = predict_proba(model, dataset.test_images)
    m = classification_metrics(np.asarray(dataset.test_labels).reshape(-1), proba, dataset.task)
    return {"dataset": name, "kind": "dpsgd", "epsilon": float(eps), "seed": seed, "accuracy": m["accuracy"],
            "balanced_accuracy": m["balanced_accuracy"], "auc": m["auc"], "mia_auc": None, "privacy": record,
            "training": {"epochs": args.dpsgd_epochs, "lr": args.dpsgd_lr, "batch": args.dpsgd_batch},
            "seconds_this_session": round(time.time() - started, 1)}


def random_cell(name: str, args) -> dict:
    """The non-private comparison: R random real subsets at the same IPC, scored with the same budget (one cell
    per dataset: it spends no ε, so it is not repeated per ε or seed; its spread is over the subsets)."""
    started = time.time()
    scores = Path(args.runs) / f"{name}-random-ipc{args.ipc}.json"
    if not scores.exists():
        scores.parent.mkdir(parents=True, exist_ok=True)
        _sh(MEDISTILL + ["baseline", *dataset_args(name), "--selector", "random", "--ipc", str(args.ipc),
                         "--subsets", str(args.random_subsets), "--models", str(args.eval_models),
                         "--epochs", str(args.eval_epochs), "--seed", "0", "--threads", str(args.threads),
                         "--device", args.device, "--json", str(scores)])
    subsets = json.loads(scores.read_text())["subsets"]
    return {"dataset": name, "kind": "random", "epsilon": math.inf, "seed": None, "ipc": args.ipc,
            **{m: subsets[m]["mean"] for m in ("accuracy", "balanced_accuracy", "auc")},
            "spread": {m: subsets[m]["std"] for m in ("accuracy", "balanced_accuracy", "auc")},
            "subsets": len(subsets["accuracy"]["values"]), "mia_auc": None, "privacy": None,
            "evaluation": {"models": args.eval_models, "epochs": args.eval_epochs},
            "seconds_this_session": round(time.time() - started, 1)}


def cmd_run(args) -> int:
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    cells = {"dpdm": dpdm_cell, "dpsgd": dpsgd_cell}
    for name in args.datasets:
        path = out / f"{name}-random-ipc{args.ipc}.json"
        if "random" in args.kinds and not path.exists():
            _save(path, random_cell(name, args))
        for eps in args.epsilons:
            for seed in args.seeds:
                for kind in (k for k in args.kinds if k in cells):
                    path = out / f"{name}-{kind}-eps{_eps_name(eps)}-s{seed}.json"
                    if path.exists():
                        print(f"done: {path}")
                        continue
                    _save(path, cells[kind](name, eps, seed, args, out))
    return 0


def _save(path: Path, result: dict) -> None:
    """One cell's result, written atomically (a killed study never leaves half a JSON that would count as done)."""
    from medistill.atomic_io import atomic_write_text

    atomic_write_text(path, json.dumps(result, indent=1))
    print(f"wrote {path}: acc {result['accuracy']:.3f} bal-acc {result['balanced_accuracy']:.3f} "
          f"AUC {result['auc']:.3f} MIA {result['mia_auc']}", flush=True)


def _mean_sd(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    mean = sum(values) / len(values)
    mean = 0.0 if round(mean, 3) == 0 else mean  # no "-0.000" from rounding error
    if len(values) == 1:  # one seed: no spread to show
        return f"{mean:.3f}"
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.3f} ± {sd:.3f}"


def cmd_table(args) -> int:
    rows = _load_results(args.results)
    if not rows:
        print(f"no results in {args.results}: run `python scripts/dp_study.py run` first", file=sys.stderr)
        return 1
    lines = ["| dataset | method | ε | seeds | accuracy | balanced accuracy | AUC | attack AUC: all / targeted |",
             "|---|---|---|---|---|---|---|---|"]
    for (name, kind, eps), rs in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        label = {"dpdm": f"DP-DM (IPC {rs[0].get('ipc')})", "dpsgd": "DP-SGD ConvNet (all real images)",
                 "random": f"random real subsets (IPC {rs[0].get('ipc')}, not private)"}[kind]
        if kind == "random":  # one cell: the mean and spread over its R subsets
            cells = " | ".join(f"{rs[0][k]:.3f} ± {rs[0]['spread'][k]:.3f}" for k in ("accuracy", "balanced_accuracy", "auc"))
            lines.append(f"| {name} | {label} | ∞ | {rs[0]['subsets']} subsets | {cells} | – |")
            continue
        attack = (f"{_mean_sd([r['mia_auc'] for r in rs])} / {_mean_sd([r.get('mia_targeted_auc') for r in rs])}"
                  if kind == "dpdm" else "–")
        lines.append(f"| {name} | {label} | {'∞' if math.isinf(eps) else f'{eps:g}'} | {len(rs)} | "
                     + " | ".join(_mean_sd([r[k] for r in rs]) for k in ("accuracy", "balanced_accuracy", "auc"))
                     + f" | {attack} |")
    text = ("Mean ± sd over seeds (random subsets: over the subsets). ε = ∞: DP-DM without clipping or noise (noise "
            "init), plain SGD, or random real images (no privacy at all). Membership "
            "attack (`medistill audit`): loss threshold on networks trained on the set; all = every real training "
            "image a member, test split the non-members; targeted = the training images nearest to the synthetic "
            "images as members (0.5 = no leak; DP-SGD: not run).\n\n"
            + "\n".join(lines) + "\n\n" + _by_epsilon(rows))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text, end="")
    print(f"wrote {args.out}")
    return 0


def _by_epsilon(rows: dict[tuple, list[dict]]) -> str:
    """The same results with ε across: balanced accuracy and AUC per method with DP-DM − DP-SGD paired by seed,
    and the DP-DM sets' attack AUCs (cells: mean ± sd over seeds, n = seeds when not all present)."""
    names = [n for n in DATASETS if any(key[0] == n for key in rows)]
    eps_values = [float(e) for e in EPSILONS]
    n_max = max(len(rs) for (_, kind, _), rs in rows.items() if kind != "random")

    def cell(values: list[float]) -> str:
        text = _mean_sd(values)
        return text if len(values) in (0, n_max) else f"{text} (n = {len(values)})"

    head = "| dataset | | " + " | ".join("ε = ∞" if math.isinf(e) else f"ε = {e:g}" for e in eps_values) + " |"
    rule = "|---|---|" + "---|" * len(eps_values)
    tables = {"balanced_accuracy": [head, rule], "auc": [head, rule], "attack": [head, rule]}
    for name in names:
        by_seed = {kind: {e: {r["seed"]: r for r in rows.get((name, kind, e), [])} for e in eps_values}
                   for kind in ("dpdm", "dpsgd")}
        random = rows.get((name, "random", math.inf))
        for metric in ("balanced_accuracy", "auc"):
            lines = tables[metric]
            for kind, label in (("dpdm", "DP-DM"), ("dpsgd", "DP-SGD")):
                lines.append(f"| {name} | {label} | " + " | ".join(
                    cell([r[metric] for r in by_seed[kind][e].values()]) for e in eps_values) + " |")
            lines.append(f"| {name} | DP-DM − DP-SGD (paired by seed) | " + " | ".join(
                cell([by_seed["dpdm"][e][s][metric] - by_seed["dpsgd"][e][s][metric]
                      for s in sorted(set(by_seed["dpdm"][e]) & set(by_seed["dpsgd"][e]))]) for e in eps_values) + " |")
            if random:
                lines.append(f"| {name} | random subsets (not private) | " + "– | " * (len(eps_values) - 1)
                             + f"{random[0][metric]:.3f} ± {random[0]['spread'][metric]:.3f} |")
        for key, label in (("mia_auc", "attack AUC, all"), ("mia_targeted_auc", "attack AUC, targeted")):
            tables["attack"].append(f"| {name} | {label} | " + " | ".join(
                cell([r.get(key) for r in by_seed["dpdm"][e].values() if r.get(key) is not None])
                for e in eps_values) + " |")
    titles = {"balanced_accuracy": "Balanced accuracy (test split) by ε; random subsets: mean ± sd over the subsets, "
                                    "shown at ε = ∞.",
              "auc": "AUC (test split; one-vs-rest mean for more than two classes) by ε.",
              "attack": "Membership attack AUC on the DP-DM sets by ε (0.5 = no leak)."}
    return "\n\n".join(f"{titles[key]}\n\n" + "\n".join(lines) for key, lines in tables.items()) + "\n"


def _load_results(folder: str) -> dict[tuple, list[dict]]:
    """results/dp/*.json grouped by (dataset, kind, ε)."""
    rows: dict[tuple, list[dict]] = {}
    for path in sorted(Path(folder).glob("*.json")):
        r = json.loads(path.read_text())
        rows.setdefault((r["dataset"], r["kind"], r["epsilon"]), []).append(r)
    return rows


def _seeds_and_means(ax, cells: dict[int, list[dict]], key: str, colour: str, label: str) -> None:
    """Scatter every seed's ``key`` at its x position and join the means (``cells``: x position → that ε's rows)."""
    means = []
    for x, rs in cells.items():
        values = [r[key] for r in rs if r.get(key) is not None]
        ax.scatter([x] * len(values), values, color=colour, s=12, alpha=0.6)
        if values:
            means.append((x, sum(values) / len(values)))
    if means:
        ax.plot(*zip(*means), color=colour, label=label)


def cmd_plot(args) -> int:
    """One column per dataset: balanced accuracy against ε (DP-DM, DP-SGD, the random-subset band) on top, the
    DP-DM sets' membership-attack AUCs below; every seed is a dot, the line joins the means."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _load_results(args.results)
    names = [n for n in DATASETS if any(key[0] == n for key in rows)]
    if not names:
        print(f"no results in {args.results}: run `python scripts/dp_study.py run` first", file=sys.stderr)
        return 1
    ticks = [float(e) for e in EPSILONS]
    x_of = {eps: i for i, eps in enumerate(ticks)}
    fig, axes = plt.subplots(2, len(names), figsize=(4.2 * len(names), 6.4), squeeze=False)
    for col, name in enumerate(names):
        top, bottom = axes[0][col], axes[1][col]
        random = rows.get((name, "random", math.inf))
        if random:
            mean, sd = random[0]["balanced_accuracy"], random[0]["spread"]["balanced_accuracy"]
            top.axhspan(mean - sd, mean + sd, color="0.85", label="random real subsets (mean ± sd, not private)")
        for kind, colour, label in (("dpdm", "C0", "DP-DM (IPC 10)"), ("dpsgd", "C3", "DP-SGD on all real images")):
            _seeds_and_means(top, {x_of[e]: rows.get((name, kind, e), []) for e in ticks}, "balanced_accuracy",
                             colour, label)
        for key, colour, label in (("mia_auc", "C2", "all training images"), ("mia_targeted_auc", "C1", "targeted")):
            _seeds_and_means(bottom, {x_of[e]: rows.get((name, "dpdm", e), []) for e in ticks}, key, colour, label)
        bottom.axhline(0.5, color="0.5", linestyle=":", linewidth=1)
        top.set_title(name)
        for ax in (top, bottom):
            ax.set_xticks(range(len(ticks)), [f"{e:g}" if not math.isinf(e) else "∞" for e in ticks])
        bottom.set_xlabel("ε (δ = 1/(10·N))")
        if col == 0:
            top.set_ylabel("balanced accuracy (test split)")
            bottom.set_ylabel("membership attack AUC on DP-DM sets")
            top.legend(fontsize=7, loc="best")
            bottom.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")
    return 0


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The ``run`` command's settings (also the defaults scripts/dp_attack_control.py audits with)."""
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--epsilons", nargs="+", default=list(EPSILONS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--kinds", nargs="+", default=["random", "dpdm", "dpsgd"], choices=["random", "dpdm", "dpsgd"])
    p.add_argument("--random-subsets", type=int, default=5, help="random real subsets R of the non-private baseline")
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--iterations", type=int, default=400, help="DM iterations (the quick preset's 400)")
    p.add_argument("--eval-models", type=int, default=3)
    p.add_argument("--eval-epochs", type=int, default=300)
    p.add_argument("--embed-epochs", type=int, default=10)
    p.add_argument("--mia-models", type=int, default=2)
    p.add_argument("--mia-epochs", type=int, default=100)
    p.add_argument("--dpsgd-epochs", type=int, default=10)
    p.add_argument("--dpsgd-lr", type=float, default=0.05)
    p.add_argument("--dpsgd-batch", type=int, default=64)
    p.add_argument("--dpsgd-clip", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--runs", default="runs/dp")
    p.add_argument("--results", default="results/dp")


def main(argv=None) -> int:
    if not sys.stderr.isatty():  # progress bars into a log file: one line every 30 s (the subprocesses inherit it)
        os.environ.setdefault("TQDM_MININTERVAL", "30")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run (or continue) the study's cells")
    add_run_arguments(p)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("table", help="markdown table of results/dp/*.json")
    p.add_argument("--results", default="results/dp")
    p.add_argument("--out", default="results/dp/TABLE.md")
    p.set_defaults(func=cmd_table)
    p = sub.add_parser("plot", help="balanced accuracy and attack AUC against ε (results/dp/dp_vs_epsilon.png)")
    p.add_argument("--results", default="results/dp")
    p.add_argument("--out", default="results/dp/dp_vs_epsilon.png")
    p.set_defaults(func=cmd_plot)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
