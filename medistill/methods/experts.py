"""MTT expert trajectories: train networks on real data, keep their parameters after every epoch.

An expert bank is a folder: ``manifest.json`` (dataset and its MD5, model, parameter count,
epochs, lr, seed, dtype, DSA's ``align_corners``; for a ZCA bank the transform's eps and fingerprint)
and one file per expert, ``expert_000.pt``, holding a (epochs+1, P) tensor: parameters after init and
after each epoch. Stored as float32 (``dtype="float16"`` halves it): a ConvNet on 1×28×28 with 2 classes has
P = 315,650, so a 50-epoch expert is 51 × P × 4 B ≈ 64 MB (float32). Experts are written atomically
one by one; a crashed run keeps those finished, and re-running continues from the next.

Distributed (``dist`` with W ranks, e.g. ``torchrun --nproc-per-node W -m medistill experts …``):
rank r trains experts r, r+W, … into the same folder. Expert i is seeded from (seed, i) alone, so the
bank equals the one-process bank file for file. Rank 0 alone checks and writes the manifest (once,
atomically) before any rank trains; each expert file is written atomically by the one rank that owns
it, so no file is written twice. The bank has one writer job: rank 0 holds its lock
(:class:`~medistill.run_lock.RunLock`) from before the manifest is checked until every rank has finished.

ZCA (``zca=True``, the MedMNIST study's MTT preprocessing): the experts train on ZCA-whitened images
(:mod:`medistill.data.zca`, fitted on the training split, eps 0.1); the bank keeps the transform in
``zca.pt`` and its fingerprint in the manifest, and MTT refuses a bank whose ZCA does not match its own
(:func:`matching_zca`).

Resampling (``align_corners``, default True): DSA's scale and rotate resample with
``align_corners=True``, as the published MTT does throughout (its DiffAugment; buffer.py trains the
experts with it). Banks made before this setting existed trained with ``align_corners=False`` and have no
``align_corners`` key in their manifest; they are read as ``align_corners=False`` (:func:`bank_align_corners`),
so a new bank never continues an old folder, and MTT refuses a bank whose resampling differs from its own
``align_corners`` (:func:`check_align_corners`). ``ExpertConfig(align_corners=False)`` still trains (or
continues) a bank the old way.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from ..atomic_io import atomic_torch_save
from ..atomic_io import atomic_write_text
from ..data import ImageDataset
from ..data.zca import DEFAULT_EPS, ZCA, fit_zca, whiten_dataset
from ..distributed import DistContext, barrier, check_same_config, expert_shard, main_then_share
from ..evaluate.train import train_epoch
from ..run_lock import RunLock, StaleLockNotice
from ..models import build_model
from .augmentation import DSAPair
from .config import DSA_STRATEGY
from .flat_params import flatten_parameters


@dataclass
class ExpertConfig:
    """MTT's buffer.py defaults: SGD lr 0.01, no momentum, no weight decay, batch 256, unseeded DSA
    resampling with align_corners=True."""

    num_experts: int = 100
    epochs: int = 50
    lr: float = 0.01
    batch_size: int = 256
    model: str = "convnet"
    seed: int = 0
    dsa_strategy: str = DSA_STRATEGY
    dtype: str = "float32"
    zca: bool = False  # train on ZCA-whitened images (eps 0.1)
    align_corners: bool = True  # DSA resampling; the published MTT's (False: medistill's banks before this field)


ZCA_FILE = "zca.pt"


def bank_manifest(dataset: ImageDataset, config: ExpertConfig, param_count: int) -> dict:
    """The bank's manifest. ZCA keys appear only for a ZCA bank, so banks made before ZCA existed still match."""
    settings = {k: v for k, v in asdict(config).items() if k not in ("num_experts", "zca")}
    manifest = {"dataset": dataset.name, "dataset_md5": dataset.md5, "channels": dataset.channels,
                "num_classes": dataset.num_classes, "image_size": dataset.image_size, "param_count": param_count,
                **settings}
    if config.zca:
        zca = fit_zca(dataset, DEFAULT_EPS)
        manifest.update(zca=True, zca_eps=zca.eps, zca_fingerprint=zca.fingerprint)
    return manifest


def bank_align_corners(manifest: dict) -> bool:
    """The DSA ``align_corners`` a bank's experts were trained with; banks without the key predate it (False)."""
    return bool(manifest.get("align_corners", False))


def check_align_corners(manifest: dict, folder, align_corners: bool) -> None:
    """ValueError naming both sides when the bank's DSA resampling differs from the MTT run's."""
    bank = bank_align_corners(manifest)
    if bank == bool(align_corners):
        return
    origin = "" if "align_corners" in manifest else " (its manifest predates the setting: the old default)"
    fix = ("rebuild the bank with this version's `medistill experts` (align_corners=True, the published MTT's) "
           "into another --out, or set align_corners=false to distil with the bank's resampling" if not bank else
           "use a bank trained with align_corners=False or set align_corners=true")
    raise ValueError(f"the experts in {Path(folder)} were trained with DSA align_corners={bank}{origin}, but this MTT "
                     f"run augments with align_corners={bool(align_corners)}: {fix}")


def bank_zca_description(manifest: dict) -> str:
    """'ZCA eps 0.1, fingerprint …' or 'no ZCA' for error messages."""
    if not manifest.get("zca"):
        return "unwhitened images (no ZCA)"
    return f"ZCA-whitened images (eps {manifest.get('zca_eps')}, fingerprint {manifest.get('zca_fingerprint')})"


def matching_zca(manifest: dict, folder, zca: ZCA | None) -> ZCA | None:
    """The transform MTT must use with this bank, or ValueError naming both sides when they differ.

    ``zca``: the run's own fit on the training split (None: the run does not whiten). When the bank's
    fingerprint differs from the run's only by float rounding (a refit on another machine), the bank's
    stored transform (``zca.pt``) is used, so experts and synthetic images live in exactly one space.
    """
    folder = Path(folder)
    run = "unwhitened images (zca off)" if zca is None else \
        f"ZCA-whitened images (eps {zca.eps}, fingerprint {zca.fingerprint})"
    fix = ("rebuild the bank with `medistill experts … --zca` (another --out) or set zca=false" if zca is not None
           else "use a bank built without --zca or set zca=true")
    if zca is None and not manifest.get("zca"):
        return None
    if zca is not None and manifest.get("zca"):
        if manifest.get("zca_fingerprint") == zca.fingerprint:
            return zca
        stored = folder / ZCA_FILE
        if stored.exists():
            bank = ZCA.load(stored)
            if bank.fingerprint == manifest.get("zca_fingerprint") and bank.close_to(zca):
                return bank
    raise ValueError(f"the experts in {folder} were trained on {bank_zca_description(manifest)}, but this MTT run "
                     f"uses {run}: {fix}")


def expert_path(folder: Path, index: int) -> Path:
    return Path(folder) / f"expert_{index:03d}.pt"


def train_expert(dataset: ImageDataset, config: ExpertConfig, index: int, device: str = "cpu") -> torch.Tensor:
    """One trajectory (epochs+1, P): seeded from (seed, index); DSA (``config.align_corners``) on every batch."""
    generator = torch.Generator().manual_seed(config.seed * 100_003 + index)
    net = build_model(config.model, dataset.channels, dataset.num_classes, dataset.image_size,
                      generator=generator).to(device)
    augment = DSAPair(config.dsa_strategy, config.align_corners, generator)
    optimizer = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=0, weight_decay=0)
    images, labels = dataset.images("train").to(device), dataset.train_labels.to(device)  # normalised per batch
    snapshots = [flatten_parameters(net).cpu()]
    for _ in range(config.epochs):  # constant lr, no momentum: not train_network's schedules; a snapshot per epoch
        train_epoch(net, images, labels, optimizer, config.batch_size, generator, augment.independent)
        snapshots.append(flatten_parameters(net).cpu())
    return torch.stack(snapshots).to(getattr(torch, config.dtype))


def build_experts(dataset: ImageDataset, config: ExpertConfig, folder, device: str = "cpu",
                  on_expert: Callable[[int], None] | None = None, dist: DistContext | None = None) -> Path:
    """Train the missing experts of a bank (creating it); returns the folder.

    With ``dist`` (W ranks) this rank trains only its share (:func:`~medistill.distributed.expert_shard`)
    and ``on_expert`` is called for those; the bank is complete when every rank has returned.
    """
    if dataset.multilabel:
        raise ValueError(f"MTT experts are trained with cross-entropy on one class per image; {dataset.name} is "
                         f"{dataset.task} (MTT does not distil it: use DM, DC or DSA)")
    dist = dist or DistContext(device=device)
    folder = Path(folder)
    probe = build_model(config.model, dataset.channels, dataset.num_classes, dataset.image_size)
    manifest = bank_manifest(dataset, config, sum(p.numel() for p in probe.parameters()))
    zca = fit_zca(dataset, DEFAULT_EPS) if config.zca else None
    check_same_config(dist, {**manifest, "num_experts": config.num_experts, "folder": str(folder)},
                      "expert configuration")

    def prepare() -> None:
        folder.mkdir(parents=True, exist_ok=True)
        manifest_file = folder / "manifest.json"
        if manifest_file.exists():
            existing = json.loads(manifest_file.read_text())
            existing.setdefault("align_corners", False)  # a bank from before the setting trained with False
            if existing != manifest:
                diff = {k: (existing.get(k), v) for k, v in manifest.items() if existing.get(k) != v}
                raise ValueError(f"{folder} holds experts made with other settings {diff}; choose another folder")
        else:
            atomic_write_text(manifest_file, json.dumps(manifest, indent=1))
        if zca is not None and not (folder / ZCA_FILE).exists():
            zca.save(folder / ZCA_FILE)

    lock = RunLock(folder, "expert bank")

    def locked_prepare() -> None:
        notice = lock.acquire()  # one job writes a bank at a time; held until every rank has its experts
        if notice:
            warnings.warn(notice, StaleLockNotice, stacklevel=3)
        prepare()

    try:
        main_then_share(dist, locked_prepare, "checking the expert bank's manifest on rank 0")
        if zca is not None:
            dataset = whiten_dataset(dataset, zca)
        for i in expert_shard(config.num_experts, dist.rank, dist.world_size):
            path = expert_path(folder, i)
            if not path.exists():
                atomic_torch_save(train_expert(dataset, config, i, device), path)
            if on_expert is not None:
                on_expert(i)
        barrier(dist, "waiting for every rank's experts before releasing the bank")
    finally:
        lock.release()
    return folder


def load_experts(folder, dataset: ImageDataset, model: str) -> tuple[dict, list[Path]]:
    """Manifest and expert files of a bank, checked against the dataset and model."""
    folder = Path(folder)
    manifest_file = folder / "manifest.json"
    if not manifest_file.exists():
        raise ValueError(f"no expert bank at {folder}: run `medistill experts --dataset {dataset.name} --out {folder}`")
    manifest = json.loads(manifest_file.read_text())
    if manifest["dataset"] != dataset.name or manifest["dataset_md5"] != dataset.md5 or manifest["model"] != model:
        raise ValueError(f"experts in {folder} were trained on {manifest['dataset']} with {manifest['model']}, "
                         f"not {dataset.name} with {model}")
    files = sorted(folder.glob("expert_*.pt"))
    if not files:
        raise ValueError(f"expert bank {folder} holds no finished expert yet")
    return manifest, files
