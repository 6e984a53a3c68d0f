"""``ImageSet``: the one container for a small image set (distilled or selected), its labels and provenance.

Saved as a single ``.pt`` file holding tensors and JSON-able metadata, with everything needed to
re-evaluate it: the normalisation statistics, the dataset it came from (and its MD5), the method,
IPC, seed, hyperparameters, versions and the learned learning rate if any. A set distilled on
ZCA-whitened images (:mod:`.zca`) carries the transform in the same file (``zca``): its images are
whitened, networks are trained and tested on whitened images, and :meth:`ImageSet.normalized_images`
/ the grid show them de-whitened.

Multi-label sets (ChestMNIST): ``labels`` are (N, K) float targets in [0, 1] (a real image's multi-hot
findings, or a synthetic image's group target, :meth:`~.dataset.ImageDataset.group_targets`), and
``groups`` (N,) int64 says which group (finding, or K for "no finding") each image was made or drawn
for: the rows of the grid and the counts of :meth:`ImageSet.images_per_class`.
"""
from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..atomic_io import atomic_torch_save
from ..version import __version__
from .dataset import NO_FINDING, primary_groups
from .errors import DataError
from .run_folder import RunFolder
from .zca import ZCA

FORMAT_VERSION = 1


def environment_versions() -> dict:
    """Package versions recorded with every saved set."""
    import numpy

    return {
        "medistill": __version__,
        "torch": str(torch.__version__),
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


@dataclass
class ImageSet:
    """images: (N, C, H, W) float normalised with ``mean``/``std`` (C,), then whitened by ``zca`` when it is
    set; labels: (N,) int64, or (N, K) float targets for a multi-label set, whose ``groups`` (N,) int64
    name each image's group (derived from the labels when not given: the first finding, else K)."""

    images: torch.Tensor
    labels: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    class_names: list[str]
    metadata: dict = field(default_factory=dict)
    zca: ZCA | None = None
    groups: torch.Tensor | None = None

    def __post_init__(self):
        if self.images.dim() != 4:
            raise DataError(f"ImageSet images must be (N, C, H, W), got {tuple(self.images.shape)}")
        n = self.images.shape[0]
        if self.labels.dim() == 2:
            if self.labels.shape != (n, len(self.class_names)) or not self.labels.is_floating_point():
                raise DataError(f"a multi-label ImageSet's labels must be float ({n}, {len(self.class_names)}), got "
                                f"{self.labels.dtype} {tuple(self.labels.shape)}")
            if self.groups is None:
                self.groups = primary_groups(self.labels)
            if self.groups.shape != (n,):
                raise DataError(f"ImageSet groups must be ({n},), got {tuple(self.groups.shape)}")
        elif self.labels.shape != (n,):
            raise DataError(f"ImageSet labels must be ({n},), got {tuple(self.labels.shape)}")
        elif self.groups is not None:
            raise DataError("a single-label ImageSet has no groups (its classes are its groups)")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def multilabel(self) -> bool:
        return self.labels.dim() == 2

    @property
    def group_names(self) -> list[str]:
        """The classes; multi-label: the findings, then "no finding"."""
        return list(self.class_names) + [NO_FINDING] if self.multilabel else list(self.class_names)

    def image_groups(self) -> torch.Tensor:
        """(N,) int64: each image's class, or its group for a multi-label set."""
        return self.groups if self.multilabel else self.labels

    @property
    def learned_lr(self) -> float | None:
        return self.metadata.get("learned_lr")

    def images_per_class(self) -> list[int]:
        """Images of each class (multi-label: of each group, the K findings then "no finding")."""
        return torch.bincount(self.image_groups(), minlength=len(self.group_names)).tolist()

    def normalized_images(self) -> torch.Tensor:
        """(N, C, H, W) float32 normalised images: de-whitened when the set carries a ZCA transform."""
        x = self.images.detach().float().cpu()
        return self.zca.invert(x) if self.zca is not None else x

    def denormalized(self) -> torch.Tensor:
        """Pixels in [0, 1] (clamped, de-whitened first for a ZCA set), (N, C, H, W)."""
        x = self.normalized_images() * self.std.view(1, -1, 1, 1) + self.mean.view(1, -1, 1, 1)
        return x.clamp(0, 1)

    def save(self, path) -> Path:
        """Write atomically (temp file + rename) to ``path``; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        metadata = dict(self.metadata)
        if self.zca is not None:
            metadata["zca"] = self.zca.describe()
        payload = {
            "format": "medistill.ImageSet",
            "format_version": FORMAT_VERSION,
            "images": self.images.detach().cpu(),
            "labels": self.labels.detach().cpu(),
            "mean": self.mean.cpu(),
            "std": self.std.cpu(),
            "class_names": list(self.class_names),
            # Plain JSON types only, so the file loads with weights_only=True.
            "metadata": json.loads(json.dumps(
                {**metadata, "versions": metadata.get("versions") or environment_versions()}, default=str)),
        }
        if self.zca is not None:
            payload["zca"] = self.zca.state_dict()
        if self.multilabel:
            payload["groups"] = self.groups.detach().cpu()
        atomic_torch_save(payload, path)
        return path

    @classmethod
    def load(cls, path) -> "ImageSet":
        path = Path(path)
        if path.is_dir():
            path = RunFolder(path).set_path
        if not path.exists():
            raise DataError(f"no image set at {path}")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise DataError(f"{path} is not a readable medistill image set: {exc}") from exc
        if not isinstance(payload, dict) or payload.get("format") != "medistill.ImageSet":
            raise DataError(f"{path} is not a medistill image set (no 'format' marker)")
        zca = None
        if payload.get("zca") is not None:
            zca = ZCA.from_state_dict(payload["zca"])
        elif (payload["metadata"] or {}).get("zca"):
            raise DataError(f"{path}: the set was distilled on ZCA-whitened images but the file lacks the transform; "
                            "it cannot be evaluated or viewed without it")
        return cls(
            images=payload["images"],
            labels=payload["labels"],
            mean=payload["mean"],
            std=payload["std"],
            class_names=payload["class_names"],
            metadata=payload["metadata"],
            zca=zca,
            groups=payload.get("groups"),
        )

    def save_grid(self, path, max_per_class: int = 10, scale: int = 3) -> Path:
        """PNG grid of the (de-whitened, de-normalised) images, one row per class (per group for a multi-label
        set), at most ``max_per_class`` columns."""
        from .grid import write_class_grid

        return write_class_grid(path, self.denormalized(), self.image_groups(), len(self.group_names), max_per_class,
                                scale)
