"""``ImageDataset``: a labelled image dataset as normalised tensors, with what is needed to undo it."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ImageDataset:
    """Train/val/test splits as float tensors normalised with the train split's per-channel statistics.

    Images are (N, C, H, W) float32: pixels scaled to [0, 1], then ``(x - mean[c]) / std[c]``.
    Labels are (N,) int64 in [0, num_classes).
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    mean: torch.Tensor  # (C,)
    std: torch.Tensor  # (C,)
    class_names: list[str]
    task: str = "multi-class"
    md5: str | None = None  # MedMNIST: the file's MD5; an image folder: fingerprint of its content and load settings
    source: str | None = None
    extra: dict = field(default_factory=dict)
    # Where the data came from, for run folders and exports: an image folder's path, file count and
    # content hash (see load_image_folder); None for MedMNIST, whose file MD5 says it all.
    provenance: dict | None = None
    # What the loader decided on the user's behalf (splits, channels, resizing, skipped files), as
    # sentences for the command line to print; the data layer itself never prints.
    notices: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[-1])

    @property
    def split_sizes(self) -> dict[str, int]:
        return {
            "train": len(self.train_labels),
            "val": len(self.val_labels),
            "test": len(self.test_labels),
        }

    def class_counts(self, split: str = "train") -> list[int]:
        labels = getattr(self, f"{split}_labels")
        return torch.bincount(labels, minlength=self.num_classes).tolist()

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        """Undo the normalisation: (N, C, H, W) normalised → pixels in [0, 1] (not clamped)."""
        return images * self.std.view(1, -1, 1, 1) + self.mean.view(1, -1, 1, 1)

    def class_indices(self, split: str = "train") -> list[torch.Tensor]:
        """Indices of each class in a split: a list of num_classes 1-D int64 tensors."""
        labels = getattr(self, f"{split}_labels")
        return [torch.nonzero(labels == c, as_tuple=False).flatten() for c in range(self.num_classes)]
