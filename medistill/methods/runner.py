"""Running a distillation end to end into a run folder a person can read.

``run_folder/`` (its files: :mod:`medistill.data.run_folder`): ``config.json``, ``checkpoint.pt`` (every
``checkpoint_every`` iterations, atomic), ``synthetic_set.pt`` (an :class:`~medistill.data.ImageSet`),
``synthetic_grid.png``, ``loss_curve.png``, ``metrics.json`` (the set's evaluation next to the random real
subset at the same IPC and the majority-class rate) and ``summary.txt``. A run killed at any point and resumed
with ``resume=True`` ends with the same synthetic set as an uninterrupted run (bit-identical on CPU).

One writer: the process running a distillation holds the folder's lock (``.medistill.lock``,
:mod:`medistill.run_lock`) for the whole run, taken before anything is written; a second process on the
same folder (``--force`` included) stops at once with an error naming the holder. ``config.json`` also
records the evaluation settings the run ends with, and ``--resume`` refuses other ones. The divergence
guard stops a run whose loss is not finite or whose images leave ``IMAGE_BOUND`` × the real images'
largest magnitude, before it writes a checkpoint of them.

Distributed (``dist`` with W ranks, class-parallel DM/DC/DSA): every rank runs :func:`distill`; all
check they hold the same configuration; only rank 0 touches the folder (checks it, loads the
checkpoint and shares it, writes config, checkpoints, the set, plots, metrics and summary); the
per-iteration losses are summed over ranks once per log/checkpoint interval. A checkpoint holds
the whole run's state, so a run may be resumed with a different number of ranks.
"""
from __future__ import annotations

import dataclasses
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..data import ImageDataset
from ..data.imageset import environment_versions
from ..data.run_folder import RANDOM_BASELINES, RunFolder
from ..distributed import (DistContext, all_reduce_max, all_reduce_sum, check_same_config, leave_together,
                           main_then_share, maybe_inject_failure)
from ..evaluate import EvalConfig, compare_with_random, evaluate_set, recipe_config, result_line
from ..selection import DEFAULT_SUBSETS, random_baseline
from ..run_lock import RunLock, StaleLockNotice
from .checkpoint import (RunFolderError, config_mismatch, evaluation_mismatch, evaluation_record, load_checkpoint,
                         read_run_config)
from ..privacy import is_private, privacy_line
from .config import config_dict
from .dc import DC, DSA
from .dm import DM
from .dp_dm import DPDM
from .mtt import MTT
from .plots import write_loss_curve

METHODS = {"dc": DC, "dsa": DSA, "dm": DM, "mtt": MTT}


# The divergence guard's bound on the synthetic images: IMAGE_BOUND × the largest magnitude of the real training
# images, in the (normalised, for MTT with zca=true whitened) space the method distils in. Runs that converge
# stay within a few times it (BreastMNIST DM, 500 iterations at lr_img 1: 2.8×); a run past it has diverged.
IMAGE_BOUND = 1000.0


class DivergenceError(ValueError):
    """The matching loss became NaN or infinite, or the images left the bound (non-finite or exploding): the
    learning rate is too high for this data."""


@dataclass
class RunResult:
    folder: Path
    metrics: dict | None
    summary: str
    notices: list[str] = dataclasses.field(default_factory=list)


def make_method(name: str, dataset: ImageDataset, config, device: str = "cpu", dist: DistContext | None = None):
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    if name == "dm" and is_private(config):  # DP-DM (docs/privacy.md): DM with the private real side
        return DPDM(dataset, config, device, dist)
    return METHODS[name](dataset, config, device, dist)


def _prepare_folder(folder: Path, run_config: dict, resume: bool, force: bool,
                    evaluation: dict | None = None) -> dict | None:
    """Check or clear the folder (its lock held); returns the checkpoint to resume from, if any."""
    run = RunFolder(folder)
    existing = run.existing()
    if existing and resume:
        if not run.config_path.exists():
            raise RunFolderError(f"{folder} holds {', '.join(existing)} but no {run.config_path.name}: it cannot be "
                                 "checked, so it cannot be resumed; start it over with --force")
        saved = read_run_config(folder)
        mismatch = config_mismatch(saved, run_config)
        if mismatch:
            raise RunFolderError(f"{folder} was made with a different configuration, cannot resume: {mismatch} "
                                 "{setting: (the folder's, this call's)}; resume with the folder's settings, or "
                                 "start over with --force, or choose another --out")
        different = evaluation_mismatch(saved, evaluation)
        if different:
            raise RunFolderError(
                f"{folder} was started with other evaluation settings, cannot resume: {different} "
                "{setting: (the folder's, this call's)}; resume with the same --eval-models/--eval-epochs/"
                "--eval-model/--random-subsets/--seed, and score the finished set with other settings with "
                f"`medistill evaluate {folder} …` (or start over with --force)")
        if run.checkpoint_path.exists():
            return load_checkpoint(folder)
        return None
    if existing and not force:
        raise RunFolderError(f"{folder} already holds a run ({', '.join(existing)}); "
                             "pass --resume to continue it or --force to start it over")
    if existing:
        run.remove_run_files()
    return None


def run_config_of(method_name: str, dataset: ImageDataset, config) -> dict:
    """config.json's content: the method, the data it ran on (an image folder's provenance included) and settings."""
    provenance = {"dataset_provenance": dataset.provenance} if dataset.provenance else {}
    return {"method": method_name, "dataset": dataset.name, "dataset_md5": dataset.md5,
            "image_shape": list(dataset.image_shape), **provenance, **config_dict(config)}


def distill(dataset: ImageDataset, method_name: str, config, folder, *, resume: bool = False,
            force: bool = False, device: str = "cpu", eval_config: EvalConfig | None = None,
            progress: bool = True, stop_after: int | None = None, dist: DistContext | None = None,
            random_subsets: int = DEFAULT_SUBSETS, require_existing: bool = False) -> RunResult:
    """Distil ``dataset`` with ``method_name`` into ``folder``; evaluate when ``eval_config`` is given.

    ``resume``: continue the run in ``folder`` when there is one (else start it); with ``require_existing``
    a folder without a run is an error instead. ``force``: start over, deleting the folder's run files.
    ``stop_after`` ends the loop early after that many iterations in this call (tests, time boxes) and
    checkpoints where it stopped, so the run resumes from there. ``random_subsets``: R of the random-subset
    baseline in ``metrics.json``. ``dist``: this process's place in a class-parallel job (default: one
    process); every rank calls this function, rank 0 alone writes and evaluates.

    The folder has one writer: rank 0 holds its lock (:class:`~medistill.run_lock.RunLock`) from before
    anything is written until this function returns or raises; another process's call fails at once with
    :class:`~medistill.run_lock.FolderInUse` naming the holder (``force`` included). A lock file left by a
    killed process is taken over with a :class:`~medistill.run_lock.StaleLockNotice` warning (also in
    ``RunResult.notices``). A call that fails before its first checkpoint leaves no config.json of its own
    behind (and no folder, when it made the folder).
    """
    dist = dist or DistContext(device=device)
    folder = Path(folder)
    if resume and force:
        raise ValueError("resume and force contradict each other: --resume continues the run in the folder, "
                         "--force deletes it and starts over; pass one")
    if stop_after is not None and stop_after < 1:
        raise ValueError(f"--stop-after must be at least 1 iteration, got {stop_after}")
    run_config = run_config_of(method_name, dataset, config)
    evaluation = evaluation_record(eval_config, random_subsets)
    check_same_config(dist, {**run_config, "folder": str(folder), "resume": resume, "force": force,
                             "stop_after": stop_after, "evaluation": evaluation,
                             "require_existing": require_existing})
    method = make_method(method_name, dataset, config, device, dist)  # bad settings fail before the folder is touched
    run = RunFolder(folder)
    lock = RunLock(folder)
    notices: list[str] = []
    made = {"config": False}

    def prepare() -> dict | None:
        if require_existing and not run.config_path.exists():
            what = "does not exist" if not folder.exists() else f"holds no run (no {run.config_path.name})"
            raise RunFolderError(f"--resume: {folder} {what}, so there is nothing to resume; check --out, drop "
                                 "--resume to start a new run there, or pass --resume-or-start")
        notice = lock.acquire()
        if notice:
            notices.append(notice)
            warnings.warn(notice, StaleLockNotice, stacklevel=4)
        found = _prepare_folder(folder, run_config, resume, force, evaluation)
        if not run.config_path.exists():
            run.write_config({**run_config, "evaluation": evaluation, "versions": environment_versions(),
                              **getattr(method, "run_record", dict)()})  # DP: the guarantee
            made["config"] = True
        return found

    try:
        checkpoint = main_then_share(dist, prepare, "preparing the run folder on rank 0")
        result = _run(dataset, method_name, config, method, folder, checkpoint, dist, eval_config, progress,
                      stop_after, random_subsets)
        result.notices = notices
        return result
    except BaseException:
        if dist.is_main and lock.held and made["config"] and not run.checkpoint_path.exists():
            run.config_path.unlink(missing_ok=True)  # nothing was kept: the folder does not block a re-run
        raise
    finally:
        lock.release()  # also removes the folder when this call made it and left nothing in it


def _largest_magnitude(images) -> float:
    """The largest |value| of the real images in the space the method distils in: a tensor's own, or for
    uint8 pixels normalised per channel the range's, max over channels of max(mean, 1 − mean) / std."""
    if isinstance(images, torch.Tensor):
        return float(images.detach().abs().max())
    if getattr(images, "is_pixels", False):
        mean, std = images.mean.detach().float().cpu(), images.std.detach().float().cpu()
        return float((torch.maximum(mean.abs(), (1 - mean).abs()) / std).max())
    data = getattr(images, "data", None)
    if isinstance(data, torch.Tensor):
        return float(data.detach().abs().max())
    return float(images[: min(len(images), 4096)].abs().max())


def _divergence(method_name: str, config, folder: Path, done: int, last_saved: int | None, what: str) -> str:
    if last_saved is not None:
        where = (f"The last finite checkpoint is iteration {last_saved} ({RunFolder(folder).checkpoint_path}, "
                 "kept); start over with a lower lr_img and --force")
    else:
        where = "No checkpoint was written before it diverged; run again with a lower lr_img"
    return (f"{method_name} diverged at iteration {done}: {what} (lr_img {config.lr_img:g}); lower lr_img "
            f"(--set lr_img=…). {where}.")


def _run(dataset, method_name, config, method, folder, checkpoint, dist, eval_config, progress, stop_after,
         random_subsets) -> RunResult:
    progress = progress and dist.is_main
    run = RunFolder(folder)
    losses: list[float] = []
    last_saved = None
    if checkpoint is not None:
        method.load_state_dict(checkpoint["method"])
        losses = list(checkpoint["losses"])
        last_saved = method.iteration
    bound = IMAGE_BOUND * _largest_magnitude(method.real_images)  # the same on every rank
    if hasattr(method, "public_magnitude"):  # DP: a bound (and its error message) that does not look at the images
        bound = IMAGE_BOUND * method.public_magnitude()
    started = time.time()
    pending: list[torch.Tensor] = []
    bar = tqdm(total=config.iterations, initial=method.iteration, desc=f"{method_name} ipc {config.ipc}",
               unit="it", disable=not progress)
    ran = 0
    try:
        while method.iteration < config.iterations:
            pending.append(method.step())
            maybe_inject_failure(dist, method.iteration)
            ran += 1
            bar.update(1)
            done = method.iteration
            stopping = stop_after is not None and ran >= stop_after
            log = done % config.log_every == 0 or done == config.iterations or stopping
            save = done % config.checkpoint_every == 0 or done == config.iterations or stopping
            if log or save:
                # the only host sync (and, distributed, the only loss exchange): once per log/checkpoint interval
                new = all_reduce_sum(dist, torch.stack(pending), "summing the losses over ranks").tolist()
                losses += new
                pending = []
                bar.set_postfix(loss=f"{losses[-1]:.4g}")
                if not all(math.isfinite(v) for v in new):
                    raise DivergenceError(_divergence(method_name, config, folder, done, last_saved,
                                                      f"the matching loss is {new[-1]}"))
                with torch.no_grad():  # NaN anywhere makes the max NaN: counted as infinite
                    local = method.images.detach().abs().amax().float().reshape(1)
                    local = torch.where(torch.isnan(local), torch.full_like(local, float("inf")), local)
                peak = float(all_reduce_max(dist, local, "comparing the images' magnitude over ranks")[0])
                if not peak <= bound:
                    what = ("the synthetic images are no longer finite" if not math.isfinite(peak) else
                            f"the synthetic images reached |x| = {peak:.3g}, beyond {IMAGE_BOUND:g} × the real "
                            f"images' largest magnitude ({bound / IMAGE_BOUND:.3g})")
                    raise DivergenceError(_divergence(method_name, config, folder, done, last_saved, what))
            if save:
                state = method.state_dict()  # a collective when distributed: every rank gathers
                if dist.is_main:
                    run.write_checkpoint({"method": state, "losses": losses})
                last_saved = done
            if stopping:
                break
    finally:
        bar.close()
    if pending:
        losses += all_reduce_sum(dist, torch.stack(pending), "summing the losses over ranks").tolist()
    if method.iteration < config.iterations:
        leave_together(dist, "leaving the process group after the last checkpoint")
        return RunResult(folder, None, f"stopped at iteration {method.iteration}/{config.iterations}; the checkpoint "
                                       f"holds iteration {last_saved}: continue with --resume\n")

    metadata = {"dataset": dataset.name, "dataset_md5": dataset.md5, "method": method_name, "ipc": config.ipc,
                "seed": config.seed, "hyperparameters": config_dict(config), "iterations": config.iterations,
                "evaluate_with_dsa": method.uses_dsa, "versions": environment_versions()}
    if dataset.provenance:
        metadata["dataset_provenance"] = dataset.provenance
    synthetic = method.synthetic_set(metadata)  # a collective when distributed: the last one
    leave_together(dist, "leaving the process group after gathering the synthetic set")
    if not dist.is_main:
        return RunResult(folder, None, f"rank {dist.rank}: classes {method.classes.start}–{method.classes.stop - 1} "
                                       f"done; rank 0 writes {folder}\n")
    synthetic.save(run.set_path)
    synthetic.save_grid(run.grid_path)
    write_loss_curve(run.loss_curve_path, list(range(1, len(losses) + 1)), losses,
                     f"{method_name.upper()} · {dataset.name} · IPC {config.ipc}")
    metrics = None
    if eval_config is not None and eval_config.num_models > 0:
        metrics = evaluate_run(dataset, synthetic, config, eval_config, progress,
                               cache_dir=folder.parent / RANDOM_BASELINES, random_subsets=random_subsets,
                               with_random=not is_private(config))  # DP: no statistic of real training images
        metrics["distill_seconds_this_session"] = round(time.time() - started, 1)
        run.write_metrics(metrics)
    summary = summarize_run(folder, method_name, dataset, config, losses, metrics,
                            privacy=synthetic.metadata.get("privacy"))
    run.write_summary(summary)
    return RunResult(folder, metrics, summary)


def evaluate_run(dataset: ImageDataset, synthetic, config, eval_config: EvalConfig, progress: bool,
                 cache_dir: Path | None = None, random_subsets: int = DEFAULT_SUBSETS,
                 with_random: bool = True) -> dict:
    """Score the synthetic set (the one recipe, :func:`medistill.evaluate.evaluate_set`) and the random-subset
    baseline at the same IPC under the same protocol (R subsets, :func:`medistill.selection.random_baseline`,
    cached in ``cache_dir`` and shared by every run with those settings), and compare them.

    A set that carries a ZCA transform is scored on the test split whitened with it, and the random
    subsets are whitened with the same transform, so both are compared in the same space.
    ``with_random=False`` (differentially private runs): no random real subset is trained or scored;
    ``random`` and ``comparison`` are None.
    """
    distilled = evaluate_set(synthetic, dataset, eval_config, progress=progress, desc="evaluate distilled")
    recipe = recipe_config(synthetic.metadata, None, eval_config)  # the same protocol, the protocol's lr
    random_result = (random_baseline(dataset, config.ipc, recipe, subsets=random_subsets, cache_dir=cache_dir,
                                     zca=synthetic.zca, progress=progress) if with_random else None)
    metrics = {"distilled": distilled.to_dict(), "random": random_result,
               "comparison": compare_with_random(distilled.summary, random_result) if random_result else None,
               "majority_rate": distilled.majority_rate, "learned_lr": synthetic.learned_lr,
               "evaluated_with_dsa": recipe.uses_dsa, "amp": getattr(config, "amp", "off"),
               "zca": synthetic.zca.describe() if synthetic.zca is not None else None}
    if synthetic.zca is not None:
        metrics["zca_note"] = ("the distilled set lives in ZCA space: the test split was whitened with the set's "
                               "transform, and the random real subsets were whitened with the same transform and "
                               "evaluated in the same space, so the comparison is like for like")
    return metrics


def summarize_run(folder: Path, method_name: str, dataset: ImageDataset, config, losses, metrics,
                  privacy: dict | None = None) -> str:
    zca = " on ZCA-whitened images" if getattr(config, "zca", False) else ""
    lines = [f"{method_name.upper()} on {dataset.name}{zca}, IPC {config.ipc}, {config.iterations} iterations, seed {config.seed}",
             f"final loss {losses[-1]:.4g} (first {losses[0]:.4g})" if losses else "no iterations run"]
    if privacy:
        lines.append(privacy_line(privacy))
    if metrics and metrics["random"] is None:  # DP: the set alone, no random real subset
        distilled = metrics["distilled"]
        lines.append(f"distilled {result_line(distilled['summary'], len(distilled['per_model']), metrics['majority_rate'])}")
        lines.append("no random real-subset baseline: a differentially private run writes no statistic of real "
                     "training images")
    elif metrics:
        distilled, random = metrics["distilled"], metrics["random"]
        lines.append(f"distilled {result_line(distilled['summary'], len(distilled['per_model']), metrics['majority_rate'])}")
        lines.append(f"random    {result_line(random['summary'], len(random['summary']['accuracy']['values']), metrics['majority_rate'])}"
                     f", {random['num_subsets']} subsets")
        spread = random["subsets"]
        lines.append("random subsets (mean ± spread over subsets): " + ", ".join(
            f"{m} {spread[m]['mean']:.3f} ± {spread[m]['std']:.3f}" for m in ("accuracy", "balanced_accuracy", "auc")))
        comparison = metrics["comparison"]
        lines.append(f"verdict: {comparison['overall']} (" + "; ".join(
            f"{m}: {comparison[m]['distilled']:.3f} vs {comparison[m]['random_mean']:.3f} + {comparison[m]['random_spread']:.3f}"
            for m in ("balanced_accuracy", "auc")) + f") — {comparison['rule']}")
        lines.append(f"majority-class rate of the test split: {metrics['majority_rate']:.3f}; "
                     f"{len(distilled['per_model'])} models, {distilled['config']['epochs']} epochs"
                     f"{' with DSA' if metrics['evaluated_with_dsa'] else ''} ({distilled['config']['schedule']} schedule)")
    lines.append(f"run folder: {folder}")
    return "\n".join(lines) + "\n"
