"""Computing one study cell: a distillation (DC/DSA/DM/MTT) or a real-data baseline, as a table row.

Distillations go through :func:`medistill.methods.distill` into ``<runs>/<cell id>/`` (a run folder,
:mod:`medistill.data.run_folder`; resumed from its checkpoint if a previous process died in it). A run folder
that already holds ``metrics.json`` for the same configuration — the study's own, or one found in an import
folder under the name ``medistill distill`` gives it (``<dataset>-<method>-ipc<K>-<preset>-s<seed>``) or the
one scripts/run_method_results.sh gives it (``<dataset>-<method>-ipc<K>-<preset>``) — is recorded
without recomputing. "Same configuration" is the runner's resume check (config.json against the
method config, ignoring checkpoint/log intervals and the expert bank's folder, which is checked by
its manifest instead) plus the evaluation settings in metrics.json (networks, epochs, seed, model).

Baselines (random, herding, k-center, full) are scored with the one evaluation recipe (no
augmentation for real images), into ``<runs>/<cell id>/metrics.json`` with the selected set beside it.

The indicator of each row (its ``random_*`` columns) is the task's random-subset baseline at the
row's IPC: R subsets (:func:`medistill.selection.random_baseline`, one cache in
``<runs>/.random_baselines``) scored under the real-image recipe (no augmentation) with evaluation seed
``INDICATOR_SEED`` — one per (task, IPC), shared by every method and seed, computed by one process while
the others wait for it. It is what ``medistill predict`` measures on a new dataset, so a distilled set
is compared with what a user would otherwise do: train on a few random real images. (A run folder's
own ``metrics.json`` compares with random subsets trained under the set's protocol instead; the study
does not compute those: distillations run without evaluation and are scored here, with the one recipe,
into ``<run folder>/study_metrics.json``.) ``verdict`` applies the "beats random" rule
(:func:`medistill.evaluate.compare_with_random`) against the indicator.

Herding and k-center share the embedding network of their (task, seed): its features are computed
once and cached in ``<runs>/.embeddings`` (the selection itself is :func:`medistill.selection.select`'s).
"""
from __future__ import annotations

import dataclasses
import fcntl
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from ..data import ImageDataset, ImageSet
from ..data.run_folder import RANDOM_BASELINES, RunFolder, run_name
from ..evaluate import EvalConfig, compare_with_random, evaluate_set
from ..ops.dsa_params import DEFAULT_STRATEGY
from ..methods import ExpertConfig, build_experts, distill, make_config
from ..methods.experts import bank_manifest, expert_path
from ..methods.checkpoint import RESUME_NEUTRAL, config_mismatch, load_json
from ..methods.runner import run_config_of
from ..run_lock import RunLock
from ..selection import check_ipc, embedding_features, herding_order, kcenter_order, random_baseline, select
from ..selection.random_scores import subset_seed
from .cells import BASELINES, DISTILL_METHODS, Budget, Cell, method_overrides
from .runner import CellUnavailable
from .table import METRICS
from .tasks import TaskLoader, parse_task, task_source

IMPORT_NEUTRAL = RESUME_NEUTRAL | {"expert_dir"}
INDICATOR_SEED = 0  # the evaluation seed of every indicator (medistill.predictor.indicator uses the same)
EMBED_EPOCHS = 10  # medistill.selection.select's default


def summary_columns(result: dict, prefix: str = "") -> dict:
    """{prefix+metric_mean/std} from an EvalResult dict (mean and std over networks); for the random
    baseline beside a row (a prefix) also {prefix+metric_spread} (std over subsets) and the number of subsets."""
    out = {}
    for m in METRICS:
        out[f"{prefix}{m}_mean"] = result["summary"][m]["mean"]
        out[f"{prefix}{m}_std"] = result["summary"][m]["std"]
        if prefix and "subsets" in result:
            out[f"{prefix}{m}_spread"] = result["subsets"][m]["std"]
    if prefix and "subsets" in result:
        out[f"{prefix}subsets"] = result["num_subsets"]
    return out


@contextmanager
def file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class CellComputer:
    """Callable cell → table row, for real data. Datasets are loaded once per process."""

    def __init__(self, budget: Budget, runs_dir, import_dirs=(), data_root=None, device: str = "cpu",
                 progress: bool = True, verify_md5: bool = True, import_only: bool = False):
        self.budget = budget
        self.runs_dir = Path(runs_dir)
        self.import_dirs = [Path(d) for d in import_dirs]
        self.data_root = data_root
        self.device = device
        self.progress = progress
        self.verify_md5 = verify_md5
        self.import_only = import_only
        self._datasets: dict[str, ImageDataset] = {}
        self._loader = TaskLoader(data_root, verify_md5=verify_md5)

    def dataset(self, name: str) -> ImageDataset:
        """A MedMNIST name, a task name (:mod:`.tasks`) or an image folder, loaded once per process."""
        if name not in self._datasets:
            self._datasets[name] = self._loader.load(name)
        return self._datasets[name]

    def canonical(self, name: str) -> str:
        """A task name in its canonical form ('retinamnist:0v1+2+3+4' → 'retinamnist:0v1-4'); other names as given."""
        spec = parse_task(name)
        if spec.groups is None and not spec.is_simulation:
            return name
        dataset = self.dataset(name)
        self._datasets.setdefault(dataset.name, dataset)
        return dataset.name

    def validate(self, cells) -> None:
        """Raise a clear error for an unknown dataset or an IPC larger than a class, before any work."""
        for cell in cells:
            dataset = self.dataset(cell.dataset)
            if cell.ipc is not None:
                check_ipc(dataset, cell.ipc)

    def eval_config(self, seed: int) -> EvalConfig:
        return EvalConfig(num_models=self.budget.resolved("eval_models"), epochs=self.budget.resolved("eval_epochs"),
                          seed=seed, device=self.device)

    def __call__(self, cell: Cell) -> dict:
        started = time.time()
        if cell.method in DISTILL_METHODS:
            row = self._distilled(cell)
        elif cell.method in BASELINES:
            with RunLock(self.runs_dir / cell.id, "study cell"):  # one writer per cell folder (distill locks its own)
                row = self._baseline(cell)
        else:
            raise ValueError(f"unknown method or baseline {cell.method!r}")
        row.setdefault("wall_seconds", round(time.time() - started, 1))
        return {"cell_id": cell.id, "dataset": cell.dataset, "source": task_source(cell.dataset),
                "classes": self.dataset(cell.dataset).num_classes, "method": cell.method, "kind": cell.kind,
                "ipc": cell.ipc, "seed": cell.seed, "preset": cell.budget, "host": socket.gethostname(),
                "pid": os.getpid(), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **row}

    # distillation -------------------------------------------------------------------------------------

    def expert_bank(self, dataset: ImageDataset) -> Path:
        return self.runs_dir / f"experts-{dataset.name}-{self.budget.tag}"

    def method_config(self, cell: Cell, dataset: ImageDataset):
        overrides = {**method_overrides(self.budget, cell.method, cell.ipc), "seed": cell.seed}
        if cell.method == "mtt":
            overrides["expert_dir"] = str(self.expert_bank(dataset))
        return make_config(cell.method, cell.ipc, self.budget.resolved("method_preset"), **overrides)

    def candidates(self, cell: Cell) -> list[Path]:
        """Run folders that may already hold this cell: the study's own, then the import folders'."""
        folders = [self.runs_dir / cell.id]
        for d in self.import_dirs:
            folders += [d / cell.id, d / run_name(cell.dataset, cell.method, cell.ipc, cell.budget)]
        return folders

    def reusable_metrics(self, folder: Path, run_config: dict, eval_config: EvalConfig) -> dict | None:
        """metrics.json of ``folder`` when it was made with the same method config and evaluation settings."""
        run = RunFolder(folder)
        if not (run.config_path.exists() and run.metrics_path.exists()):
            return None
        mismatch = config_mismatch(run.read_config(), run_config)
        if set(mismatch) - IMPORT_NEUTRAL:
            return None
        metrics = run.read_metrics()
        used = metrics["distilled"]["config"]
        strategy = DEFAULT_STRATEGY if metrics["evaluated_with_dsa"] else None
        expected_epochs = dataclasses.replace(eval_config, dsa_strategy=strategy).resolved_epochs()
        same = (used["num_models"] == eval_config.num_models and used["epochs"] == expected_epochs
                and used["seed"] == eval_config.seed and used["model"] == eval_config.model
                and used.get("schedule", "half") == eval_config.schedule  # older runs: the old schedule
                and metrics["random"].get("num_subsets") == self.budget.resolved("random_subsets"))
        return metrics if same else None

    def _expert_config(self, config) -> ExpertConfig:
        return ExpertConfig(num_experts=config.num_experts, epochs=config.expert_train_epochs, model=config.model,
                            zca=config.zca)

    def imported_bank(self, dataset: ImageDataset, config) -> Path | None:
        """A complete expert bank with the same manifest in an import folder (read only), if any.

        Looked for under the name the study gives its own bank (:meth:`expert_bank`).
        """
        expected = bank_manifest(dataset, self._expert_config(config), self._param_count(dataset, config))
        for d in self.import_dirs:
            bank = d / self.expert_bank(dataset).name
            manifest = bank / "manifest.json"
            if (manifest.exists() and load_json(manifest) == expected
                    and all(expert_path(bank, i).exists() for i in range(config.num_experts))):
                return bank
        return None

    @staticmethod
    def _param_count(dataset: ImageDataset, config) -> int:
        from ..models import build_model

        probe = build_model(config.model, dataset.channels, dataset.num_classes, dataset.image_size)
        return sum(p.numel() for p in probe.parameters())

    def _ensure_experts(self, dataset: ImageDataset, config):
        """The config with an expert bank that exists: an imported one, or the study's own (built once)."""
        imported = self.imported_bank(dataset, config)
        if imported is not None:
            return dataclasses.replace(config, expert_dir=str(imported))
        bank = Path(config.expert_dir)
        with file_lock(bank.parent / f".{bank.name}.lock"):  # one process trains a bank, the others wait
            build_experts(dataset, self._expert_config(config), bank, device=self.device)
        return config

    def _eval_settings(self, dataset: ImageDataset, cell: Cell, eval_config: EvalConfig) -> dict:
        return {"dataset": cell.dataset, "dataset_md5": dataset.md5, "method": cell.method, "ipc": cell.ipc,
                "seed": cell.seed, "eval": dataclasses.asdict(eval_config)}

    @staticmethod
    def own_metrics(folder: Path, run_config: dict, settings: dict) -> dict | None:
        """The study's own score of a finished run folder made with this configuration, if any."""
        run = RunFolder(folder)
        if not (run.study_metrics_path.exists() and run.config_path.exists() and run.set_path.exists()):
            return None
        if set(config_mismatch(run.read_config(), run_config)) - IMPORT_NEUTRAL:
            return None
        saved = run.read_study_metrics()
        return saved if saved.get("settings") == settings else None

    def _distilled(self, cell: Cell) -> dict:
        dataset = self.dataset(cell.dataset)
        config = self.method_config(cell, dataset)
        eval_config = self.eval_config(cell.seed)
        run_config = run_config_of(cell.method, dataset, config)
        settings = self._eval_settings(dataset, cell, eval_config)
        for folder in self.candidates(cell):
            saved = self.own_metrics(folder, run_config, settings)
            if saved is not None:
                return self._row(dataset, cell.ipc, saved["distilled"], folder, True, saved["images"]) | {
                    "wall_seconds": saved["seconds"]}
            metrics = self.reusable_metrics(folder, run_config, eval_config)  # a `medistill distill` run folder
            if metrics is not None:
                run = RunFolder(folder)
                images = len(ImageSet.load(run.set_path).labels) if run.set_path.exists() else None
                row = self._row(dataset, cell.ipc, metrics["distilled"], folder, True, images)
                if metrics.get("distill_seconds_this_session") is not None:
                    row["wall_seconds"] = metrics["distill_seconds_this_session"]
                return row
        if self.import_only:
            raise CellUnavailable(f"no finished run folder with this configuration among {self.candidates(cell)}")
        if cell.method == "mtt":
            config = self._ensure_experts(dataset, config)
        folder = self.runs_dir / cell.id
        started = time.time()
        distill(dataset, cell.method, config, folder, resume=True, device=self.device, eval_config=None,
                progress=self.progress)
        with RunLock(folder, "study cell"):  # distill has released it; one writer scores the set
            synthetic = ImageSet.load(folder)
            result = evaluate_set(synthetic, dataset, eval_config, progress=self.progress,
                                  desc=f"evaluate {cell.method} ipc {cell.ipc}").to_dict()
            saved = {"settings": settings, "distilled": result, "images": len(synthetic.labels),
                     "seconds": round(time.time() - started, 1)}
            RunFolder(folder).write_study_metrics(saved)
        return self._row(dataset, cell.ipc, result, folder, False, saved["images"]) | {"wall_seconds": saved["seconds"]}

    def _row(self, dataset: ImageDataset, ipc: int | None, result: dict, folder: Path, reused: bool,
             images: int | None) -> dict:
        """The table columns of a scored set: its summary, the task's indicator at ``ipc`` and the verdict."""
        row = {**summary_columns(result), "majority_rate": result["majority_rate"],
               "eval_models": result["config"]["num_models"], "eval_epochs": result["config"]["epochs"],
               "eval_augment": bool(result["config"].get("dsa_strategy")), "images": images, "reused": reused,
               "run_folder": str(folder.resolve())}
        if ipc is not None:
            indicator = self.indicator(dataset, ipc)
            row.update(summary_columns(indicator, "random_"))
            row["verdict"] = compare_with_random(result["summary"], indicator)["overall"]
        return row

    # baselines ----------------------------------------------------------------------------------------

    def random_score(self, dataset: ImageDataset, ipc: int, seed: int, config: EvalConfig) -> dict:
        """The random-subset baseline at ``ipc`` (R subsets of seed ``seed``), cached beside the run folders."""
        cache = self.runs_dir / RANDOM_BASELINES
        with file_lock(cache / f".{dataset.md5}-ipc{ipc}-s{seed}.lock"):  # one process scores it, the others wait
            return random_baseline(dataset, ipc, dataclasses.replace(config, seed=seed),
                                   subsets=self.budget.resolved("random_subsets"), cache_dir=cache,
                                   progress=self.progress)

    def indicator(self, dataset: ImageDataset, ipc: int) -> dict:
        """The task's indicator at ``ipc``: its random-subset baseline, real-image recipe, seed ``INDICATOR_SEED``."""
        return self.random_score(dataset, ipc, INDICATOR_SEED, self.eval_config(INDICATOR_SEED))

    def embedding(self, dataset: ImageDataset, seed: int) -> "torch.Tensor":
        """``embedding_features(dataset, seed)``, computed once per (task, seed) and cached on disk."""
        import torch

        path = self.runs_dir / ".embeddings" / f"{dataset.md5}-s{seed}-e{EMBED_EPOCHS}.pt"
        with file_lock(path.parent / f".{path.name}.lock"):
            if path.exists():
                return torch.load(path, weights_only=True)
            features = embedding_features(dataset, seed, EMBED_EPOCHS)
            from ..atomic_io import atomic_torch_save
            atomic_torch_save(features, path)
            return features

    def selection(self, dataset: ImageDataset, selector: str, ipc: int | None, seed: int) -> ImageSet:
        """``select(dataset, selector, ipc, seed)``; herding and k-center of a single-label task with the cached
        embedding (the same set: tests/test_study.py checks it against ``select``)."""
        import torch

        if selector not in ("herding", "kcenter") or getattr(dataset, "multilabel", False):
            return select(dataset, selector, ipc, seed=seed, embed_epochs=EMBED_EPOCHS)
        check_ipc(dataset, ipc)
        features = self.embedding(dataset, seed)
        order = herding_order if selector == "herding" else kcenter_order
        indices = torch.cat([idx[order(features[idx], ipc)] for idx in dataset.class_indices("train")])
        metadata = {"dataset": dataset.name, "dataset_md5": dataset.md5, "method": selector, "ipc": ipc, "seed": seed,
                    "hyperparameters": {"embed_epochs": EMBED_EPOCHS}, "source_indices": indices.tolist(),
                    "task": dataset.task}
        return ImageSet(images=dataset.images("train")[indices].clone(), labels=dataset.train_labels[indices].clone(),
                        mean=dataset.mean, std=dataset.std, class_names=dataset.class_names, metadata=metadata)

    def _baseline(self, cell: Cell) -> dict:
        dataset = self.dataset(cell.dataset)
        config = self.eval_config(cell.seed)
        if cell.method == "full":
            config = dataclasses.replace(config, epochs=self.budget.resolved("full_epochs"))
        folder = self.runs_dir / cell.id
        settings = {"dataset_md5": dataset.md5, "selector": cell.method, "ipc": cell.ipc, "seed": cell.seed,
                    "eval": dataclasses.asdict(config), "random_subsets": self.budget.resolved("random_subsets"),
                    "indicator_seed": INDICATOR_SEED}
        record = RunFolder(folder)  # a baseline cell's folder: its own record under the run folder's metrics name
        saved = record.read_metrics() if record.metrics_path.exists() else None
        if saved is not None and saved.get("settings") == settings:
            return self._row(dataset, cell.ipc, saved["result"], folder, True, saved["images"]) | {
                "wall_seconds": saved["seconds"]}
        if self.import_only:
            raise CellUnavailable(f"no finished baseline in {folder}")
        started = time.time()
        if cell.method == "random":
            subset = select(dataset, "random", cell.ipc, seed=subset_seed(cell.seed, 0))  # the baseline's first subset
            result = self.random_score(dataset, cell.ipc, cell.seed, config)
        else:
            subset = self.selection(dataset, cell.method, cell.ipc, cell.seed)
            result = evaluate_set(subset, dataset, config, progress=self.progress,
                                  desc=f"{cell.method} ipc {cell.ipc}").to_dict()
        subset.save(folder / "selected_set.pt")
        saved = {"settings": settings, "result": result, "images": len(subset.labels),
                 "seconds": round(time.time() - started, 1)}
        record.write_metrics(saved)
        return self._row(dataset, cell.ipc, result, folder, False, saved["images"]) | {"wall_seconds": saved["seconds"]}
