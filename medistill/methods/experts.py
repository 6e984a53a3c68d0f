"""MTT expert trajectories: train networks on real data, keep their parameters after every epoch.

An expert bank is a folder: ``manifest.json`` (dataset and its MD5, model, parameter count,
epochs, lr, seed, dtype) and one file per expert, ``expert_000.pt``, holding a (epochs+1, P)
tensor: parameters after init and after each epoch. Stored as float32 (``dtype="float16"`` halves
it): a ConvNet on 1×28×28 with 2 classes has P = 315,650, so a 50-epoch expert is 51 × P × 4 B ≈
64 MB (float32). Experts are written atomically one by one; a crashed run keeps those finished,
and re-running continues from the next.

Distributed (``dist`` with W ranks, e.g. ``torchrun --nproc-per-node W -m medistill experts …``):
rank r trains experts r, r+W, … into the same folder. Expert i is seeded from (seed, i) alone, so the
bank equals the one-process bank file for file. Rank 0 alone checks and writes the manifest (once,
atomically) before any rank trains; each expert file is written atomically by the one rank that owns
it, so no file is written twice.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from ..atomic_io import atomic_torch_save
from ..atomic_io import atomic_write_text
from ..data import ImageDataset
from ..distributed import DistContext, check_same_config, expert_shard, main_then_share
from ..models import build_model
from .augmentation import DSAPair
from .config import DSA_STRATEGY
from .flat_params import flatten_parameters


@dataclass
class ExpertConfig:
    """MTT's buffer.py defaults: SGD lr 0.01, no momentum, no weight decay, batch 256, unseeded DSA."""

    num_experts: int = 100
    epochs: int = 50
    lr: float = 0.01
    batch_size: int = 256
    model: str = "convnet"
    seed: int = 0
    dsa_strategy: str = DSA_STRATEGY
    dtype: str = "float32"


def _manifest(dataset: ImageDataset, config: ExpertConfig, param_count: int) -> dict:
    return {"dataset": dataset.name, "dataset_md5": dataset.md5, "channels": dataset.channels,
            "num_classes": dataset.num_classes, "image_size": dataset.image_size, "param_count": param_count,
            **{k: v for k, v in asdict(config).items() if k != "num_experts"}}


def expert_path(folder: Path, index: int) -> Path:
    return Path(folder) / f"expert_{index:03d}.pt"


def train_expert(dataset: ImageDataset, config: ExpertConfig, index: int, device: str = "cpu") -> torch.Tensor:
    """One trajectory (epochs+1, P): seeded from (seed, index); DSA on every batch."""
    generator = torch.Generator().manual_seed(config.seed * 100_003 + index)
    net = build_model(config.model, dataset.channels, dataset.num_classes, dataset.image_size,
                      generator=generator).to(device)
    augment = DSAPair(config.dsa_strategy, False, generator)
    optimizer = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=0, weight_decay=0)
    images, labels = dataset.train_images.to(device), dataset.train_labels.to(device)
    snapshots = [flatten_parameters(net).cpu()]
    net.train()
    for _ in range(config.epochs):
        order = torch.randperm(len(labels), generator=generator).to(device)
        for start in range(0, len(labels), config.batch_size):
            idx = order[start : start + config.batch_size]
            loss = F.cross_entropy(net(augment.independent(images[idx])), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        snapshots.append(flatten_parameters(net).cpu())
    return torch.stack(snapshots).to(getattr(torch, config.dtype))


def build_experts(dataset: ImageDataset, config: ExpertConfig, folder, device: str = "cpu",
                  on_expert: Callable[[int], None] | None = None, dist: DistContext | None = None) -> Path:
    """Train the missing experts of a bank (creating it); returns the folder.

    With ``dist`` (W ranks) this rank trains only its share (:func:`~medistill.distributed.expert_shard`)
    and ``on_expert`` is called for those; the bank is complete when every rank has returned.
    """
    dist = dist or DistContext(device=device)
    folder = Path(folder)
    probe = build_model(config.model, dataset.channels, dataset.num_classes, dataset.image_size)
    manifest = _manifest(dataset, config, sum(p.numel() for p in probe.parameters()))
    check_same_config(dist, {**manifest, "num_experts": config.num_experts, "folder": str(folder)},
                      "expert configuration")

    def prepare() -> None:
        folder.mkdir(parents=True, exist_ok=True)
        manifest_file = folder / "manifest.json"
        if manifest_file.exists():
            existing = json.loads(manifest_file.read_text())
            if existing != manifest:
                diff = {k: (existing.get(k), v) for k, v in manifest.items() if existing.get(k) != v}
                raise ValueError(f"{folder} holds experts made with other settings {diff}; choose another folder")
        else:
            atomic_write_text(manifest_file, json.dumps(manifest, indent=1))

    main_then_share(dist, prepare, "checking the expert bank's manifest on rank 0")
    for i in expert_shard(config.num_experts, dist.rank, dist.world_size):
        path = expert_path(folder, i)
        if not path.exists():
            atomic_torch_save(train_expert(dataset, config, i, device), path)
        if on_expert is not None:
            on_expert(i)
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
