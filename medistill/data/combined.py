"""The combined "simulation" dataset: every MedMNIST dataset in the data root becomes one class.

This is the study's "great variation between classes" case (classes from different organs and
modalities), next to the per-dataset "minor variation" case (classes within one modality).

- Classes: the single-label MedMNIST 2D datasets whose 28 px file is in the data root, in name order
  (with the bundled files: breastmnist → class 0, retinamnist → class 1). At least two are needed.
- Channels: every image becomes 3-channel; a grayscale image is repeated into the 3 channels
  (R = G = B), so grayscale and colour datasets share one tensor shape.
- Size: each class keeps at most ``CLASS_CAP[split]`` images of each original split (train 300,
  val 50, test 150), drawn without replacement with a generator seeded by ``seed`` (0) from that
  dataset's own split, so the combined splits stay disjoint and the same files give the same set.
- Normalisation: per-channel mean/std of the combined train split, like every other dataset.
"""
from __future__ import annotations

import hashlib

import torch

from .dataset import ImageDataset
from .errors import DataError
from .medmnist_files import default_root, file_name, load_medmnist, dataset_names, _info
from .normalize import channel_stats, normalize

NAME = "simulation"
CLASS_CAP = {"train": 300, "val": 50, "test": 150}
SPLITS = ("train", "val", "test")


def member_datasets(root=None) -> list[str]:
    """Names of the single-label MedMNIST 2D datasets whose 28 px file is in the root (sorted)."""
    folder = default_root(root)
    info = _info()
    return [name for name in dataset_names()
            if "multi-label" not in info[name]["task"] and (folder / file_name(name, 28)).exists()]


def _capped(dataset: ImageDataset, split: str, cap: int, generator: torch.Generator) -> torch.Tensor:
    """At most ``cap`` images of the split, a seeded draw kept in original order, as 3 channels in [0, 1]
    (only the drawn images are taken as floats)."""
    images = dataset.images(split)
    keep = slice(None)
    if len(images) > cap:
        keep = torch.randperm(len(images), generator=generator)[:cap].sort().values
    pixels = dataset.denormalize(images[keep])  # back to [0, 1] pixels
    return pixels.expand(-1, 3, -1, -1).clone() if pixels.shape[1] == 1 else pixels.clone()


def load_combined(root=None, size: int = 28, *, verify_md5: bool = True, download: bool = False,
                  seed: int = 0, class_cap: dict | None = None) -> ImageDataset:
    """The "simulation" dataset: (N, 3, 28, 28) images, label = index of the source dataset."""
    if size != 28:
        raise DataError(f"the {NAME!r} dataset is built from the 28 px files only, got size {size}")
    if download:
        raise DataError(f"the {NAME!r} dataset combines the files already in the data root; it downloads nothing")
    caps = {**CLASS_CAP, **(class_cap or {})}
    members = member_datasets(root)
    if len(members) < 2:
        raise DataError(f"the {NAME!r} dataset needs at least two single-label MedMNIST files in "
                        f"{default_root(root)}; found {members or 'none'}")
    pixels = {s: [] for s in SPLITS}
    labels = {s: [] for s in SPLITS}
    md5s = []
    for label, name in enumerate(members):
        dataset = load_medmnist(name, size=28, root=root, verify_md5=verify_md5)
        md5s.append(f"{name}:{dataset.md5}")
        generator = torch.Generator().manual_seed(seed * 7919 + label)
        for split in SPLITS:
            chosen = _capped(dataset, split, caps[split], generator)
            pixels[split].append(chosen)
            labels[split].append(torch.full((len(chosen),), label, dtype=torch.int64))
    floats = {s: torch.cat(pixels[s]) for s in SPLITS}
    mean, std = channel_stats(floats["train"])
    fingerprint = hashlib.md5(repr((md5s, sorted(caps.items()), seed)).encode()).hexdigest()
    return ImageDataset(
        name=NAME,
        train_images=normalize(floats["train"], mean, std), train_labels=torch.cat(labels["train"]),
        val_images=normalize(floats["val"], mean, std), val_labels=torch.cat(labels["val"]),
        test_images=normalize(floats["test"], mean, std), test_labels=torch.cat(labels["test"]),
        mean=mean, std=std, class_names=list(members), task="multi-class", md5=fingerprint,
        source=str(default_root(root)),
        extra={"size": 28, "members": md5s, "class_cap": caps, "seed": seed,
               "channels": "grayscale repeated into 3 channels"},
    )
