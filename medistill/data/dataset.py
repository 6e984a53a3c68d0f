"""``ImageDataset``: a labelled image dataset whose splits are served as normalised float batches.

Storage. A MedMNIST file's images stay as the file stores them, uint8 (N, H, W) or (N, H, W, C): one
byte a pixel, a quarter of float32, so a 224 px set needs in memory what its uint8 arrays take (PathMNIST
at 224 px: 13.5 GB, not 54 GB). Every batch is normalised when it is taken,
``(float32(x) / 255 - mean[c]) / std[c]`` (:func:`~.normalize.normalize_pixels`): the same numbers the
loader used to store for the whole split. A dataset built from float tensors (an image folder, the
combined "simulation" set, a ZCA-whitened copy, tests) keeps those tensors as they are.

Access (what methods, evaluation and selection use):

* ``dataset.images(split)`` → :class:`SplitImages`, tensor-like: ``len``, ``.shape`` (N, C, H, W),
  ``images[indices]`` → a normalised float32 (B, C, H, W) tensor, ``.to(device)`` (moves the stored
  bytes; batches are then normalised on that device, to the same bits), ``.batches(size)``;
* ``dataset.batch(split, indices)``: ``dataset.images(split)[indices]``;
* ``dataset.train_images`` / ``val_images`` / ``test_images``: the whole split as one float32 tensor,
  built on every access for uint8 storage (C·H·W·4 bytes an image: 588 KiB at 3×224×224); for small
  sets and callers that want one tensor.

Labels. Single-label tasks (multi-class, binary-class, ordinal-regression): (N,) int64 in
[0, num_classes). Multi-label (ChestMNIST, task "multi-label, binary-class"): (N, K) float32 multi-hot,
K = ``num_classes`` findings, the targets of a BCE-with-logits loss.

Groups: what a distillation method makes images for, and what "per class" means for IPC and for
random subsets. Single-label: the classes. Multi-label: one group per finding (the images with that
finding, whatever else they show) plus a last "no finding" group (every label 0), K + 1 in all; an
image with several findings belongs to several groups (:meth:`ImageDataset.group_indices`).
"""
from __future__ import annotations

import torch

from .normalize import normalize_pixels, pixel_channels

SPLITS = ("train", "val", "test")
NO_FINDING = "no finding"


def is_multilabel_task(task: str | None) -> bool:
    """Whether a MedMNIST task string names multi-label data ("multi-label, binary-class")."""
    return bool(task) and "multi-label" in str(task)


def _index(index, device: torch.device):
    """A batch index as torch indexing wants it: a slice stays, anything else becomes an int64 tensor."""
    if isinstance(index, slice):
        return index
    if isinstance(index, torch.Tensor):
        return index if index.device == device else index.to(device)
    return torch.as_tensor(index, dtype=torch.int64, device=device)


class SplitImages:
    """One split's images, served as normalised float32 batches (see the module doc).

    ``data``: uint8 pixels (N, H, W) or (N, H, W, C) with the normalisation ``mean``/``std`` (C,), or
    float (N, C, H, W) images already normalised (then ``mean``/``std`` are not used).
    """

    def __init__(self, data: torch.Tensor, mean: torch.Tensor | None = None, std: torch.Tensor | None = None):
        if not isinstance(data, torch.Tensor):
            data = torch.as_tensor(data)
        self.data = data
        self.is_pixels = data.dtype == torch.uint8
        if self.is_pixels:
            if data.dim() not in (3, 4):
                raise ValueError(f"uint8 images must be (N, H, W) or (N, H, W, C), got {tuple(data.shape)}")
            if mean is None or std is None:
                raise ValueError("uint8 images need the normalisation mean and std")
            c = pixel_channels(data)
            self.mean = mean.detach().to(device=data.device, dtype=torch.float32).reshape(c)
            self.std = std.detach().to(device=data.device, dtype=torch.float32).reshape(c)
            n, h, w = data.shape[:3]
            self._shape = torch.Size((n, c, h, w))
        else:
            if data.dim() != 4:
                raise ValueError(f"float images must be (N, C, H, W), got {tuple(data.shape)}")
            self.mean, self.std = mean, std
            self._shape = data.shape

    @property
    def shape(self) -> torch.Size:
        """(N, C, H, W), as the batches come out."""
        return self._shape

    @property
    def dtype(self) -> torch.dtype:
        """The batches' dtype: float32 for uint8 storage, the stored tensors' otherwise."""
        return torch.float32 if self.is_pixels else self.data.dtype

    @property
    def device(self) -> torch.device:
        return self.data.device

    @property
    def nbytes(self) -> int:
        """Bytes held in memory for this split."""
        return self.data.numel() * self.data.element_size()

    def __len__(self) -> int:
        return int(self._shape[0])

    def dim(self) -> int:
        return 4

    def __getitem__(self, index) -> torch.Tensor:
        """Normalised float images: ``[i]`` → (C, H, W); a slice, index list or tensor → (B, C, H, W)."""
        if isinstance(index, int):
            return self[index : index + 1 if index != -1 else None][0]
        index = _index(index, self.data.device)
        if not self.is_pixels:
            return self.data[index]
        return normalize_pixels(self.data[index], self.mean, self.std)

    def to(self, device, non_blocking: bool = False) -> "SplitImages":
        """The same split with its stored bytes on ``device`` (itself when already there)."""
        device = torch.device(device)
        if device == self.data.device or (device.index is None and device.type == self.data.device.type):
            return self
        moved = SplitImages.__new__(SplitImages)
        moved.data = self.data.to(device, non_blocking=non_blocking)
        moved.is_pixels, moved._shape = self.is_pixels, self._shape
        moved.mean = None if self.mean is None else self.mean.to(device, non_blocking=non_blocking)
        moved.std = None if self.std is None else self.std.to(device, non_blocking=non_blocking)
        return moved

    def cpu(self) -> "SplitImages":
        return self.to("cpu")

    def materialize(self) -> torch.Tensor:
        """The whole split as one normalised float tensor (N, C, H, W): the stored tensor itself for float
        storage, a new one for uint8 storage."""
        return self.data if not self.is_pixels else self[:]

    def batches(self, batch_size: int):
        """Normalised (≤ batch_size, C, H, W) tensors over the split in order."""
        for start in range(0, len(self), batch_size):
            yield self[start : start + batch_size]

    def __repr__(self) -> str:
        kind = "uint8 pixels, normalised per batch" if self.is_pixels else f"{self.data.dtype} tensors"
        return f"SplitImages({tuple(self._shape)}, {kind}, {self.nbytes / 2**20:.1f} MiB on {self.device})"


def _as_split(images, mean, std) -> SplitImages:
    if isinstance(images, SplitImages):
        return images
    return SplitImages(images if isinstance(images, torch.Tensor) else torch.as_tensor(images), mean, std)


class ImageDataset:
    """Train/val/test splits of images and labels, normalised with the train split's per-channel statistics.

    Images come out as (N, C, H, W) float32: pixels scaled to [0, 1], then ``(x - mean[c]) / std[c]``
    (see the module doc for how they are stored and taken). Labels: (N,) int64 class indices, or (N, K)
    float32 multi-hot for a multi-label task. ``*_images`` may be given as uint8 pixels (N, H, W[, C]),
    normalised per batch with ``mean``/``std``, or as already normalised float tensors (N, C, H, W).
    """

    def __init__(self, name: str, train_images, train_labels: torch.Tensor, val_images, val_labels: torch.Tensor,
                 test_images, test_labels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, class_names: list[str],
                 task: str = "multi-class", md5: str | None = None, source: str | None = None,
                 extra: dict | None = None, provenance: dict | None = None, notices: list[str] | None = None):
        self.name = name
        self._splits = {s: _as_split(x, mean, std) for s, x in zip(SPLITS, (train_images, val_images, test_images))}
        self.train_labels, self.val_labels, self.test_labels = train_labels, val_labels, test_labels
        self.mean, self.std = mean, std
        self.class_names = list(class_names)
        self.task = task
        self.md5 = md5  # MedMNIST: the file's MD5; an image folder: fingerprint of its content and load settings
        self.source = source
        self.extra = dict(extra or {})
        # Where the data came from, for run folders and exports: an image folder's path, file count and
        # content hash (see load_image_folder); None for MedMNIST, whose file MD5 says it all.
        self.provenance = provenance
        # What the loader decided on the user's behalf (splits, channels, resizing, skipped files), as
        # sentences for the command line to print; the data layer itself never prints.
        self.notices = list(notices or [])

    _FIELDS = ("name", "train_images", "train_labels", "val_images", "val_labels", "test_images", "test_labels",
               "mean", "std", "class_names", "task", "md5", "source", "extra", "provenance", "notices")

    def replace(self, **changes) -> "ImageDataset":
        """A copy with some constructor arguments changed (images may be tensors or :class:`SplitImages`);
        what is not changed is shared, not copied."""
        unknown = set(changes) - set(self._FIELDS)
        if unknown:
            raise TypeError(f"ImageDataset has no field(s) {', '.join(sorted(unknown))}")
        values = {f: (self._splits[f[:-7]] if f.endswith("_images") else getattr(self, f)) for f in self._FIELDS}
        return ImageDataset(**{**values, **changes})

    # --- images ------------------------------------------------------------------------------------
    def images(self, split: str = "train") -> SplitImages:
        """The split's images as a :class:`SplitImages`: index it for normalised float batches."""
        if split not in self._splits:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        return self._splits[split]

    def batch(self, split: str, indices) -> torch.Tensor:
        """Normalised float32 (B, C, H, W) images ``indices`` of ``split``."""
        return self.images(split)[indices]

    @property
    def train_images(self) -> torch.Tensor:
        """The whole train split as one normalised float tensor (built anew for uint8 storage)."""
        return self._splits["train"].materialize()

    @property
    def val_images(self) -> torch.Tensor:
        return self._splits["val"].materialize()

    @property
    def test_images(self) -> torch.Tensor:
        return self._splits["test"].materialize()

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image."""
        return tuple(int(s) for s in self._splits["train"].shape[1:])

    @property
    def channels(self) -> int:
        return self.image_shape[0]

    @property
    def image_size(self) -> int:
        return self.image_shape[-1]

    @property
    def memory_bytes(self) -> int:
        """Bytes the three splits' images hold in memory."""
        return sum(s.nbytes for s in self._splits.values())

    # --- labels, classes and groups -----------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """Outputs of a network for this task: classes, or findings for multi-label data."""
        return len(self.class_names)

    @property
    def multilabel(self) -> bool:
        return is_multilabel_task(self.task)

    @property
    def split_sizes(self) -> dict[str, int]:
        return {
            "train": len(self.train_labels),
            "val": len(self.val_labels),
            "test": len(self.test_labels),
        }

    def labels(self, split: str = "train") -> torch.Tensor:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        return getattr(self, f"{split}_labels")

    def class_counts(self, split: str = "train") -> list[int]:
        """Images of each class (multi-label: images showing each finding)."""
        labels = self.labels(split)
        if self.multilabel:
            return [int(v) for v in (labels > 0.5).sum(0).tolist()]
        return torch.bincount(labels, minlength=self.num_classes).tolist()

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        """Undo the normalisation: (N, C, H, W) normalised → pixels in [0, 1] (not clamped)."""
        return images * self.std.view(1, -1, 1, 1) + self.mean.view(1, -1, 1, 1)

    def class_indices(self, split: str = "train") -> list[torch.Tensor]:
        """Indices of each class in a split: a list of num_classes 1-D int64 tensors (multi-label: the images
        showing each finding)."""
        labels = self.labels(split)
        if self.multilabel:
            return [torch.nonzero(labels[:, c] > 0.5, as_tuple=False).flatten() for c in range(self.num_classes)]
        return [torch.nonzero(labels == c, as_tuple=False).flatten() for c in range(self.num_classes)]

    @property
    def group_names(self) -> list[str]:
        """The classes; multi-label: the findings, then "no finding"."""
        return self.class_names + [NO_FINDING] if self.multilabel else list(self.class_names)

    @property
    def num_groups(self) -> int:
        return len(self.group_names)

    def group_indices(self, split: str = "train") -> list[torch.Tensor]:
        """Indices of each group's images (see the module doc): the class indices for single-label data;
        multi-label: each finding's positive images, then the images with no finding."""
        groups = self.class_indices(split)
        if self.multilabel:
            groups.append(torch.nonzero((self.labels(split) > 0.5).sum(1) == 0, as_tuple=False).flatten())
        return groups

    def group_counts(self, split: str = "train") -> list[int]:
        return [len(idx) for idx in self.group_indices(split)]

    def group_targets(self) -> torch.Tensor:
        """The label a synthetic image made for each group is trained towards: single-label, the class index
        (G,) int64; multi-label, (G, K) float32, the mean label vector of the group's training images (1 for
        the group's own finding, each other finding's co-occurrence rate in that group; all 0 for no finding)."""
        if not self.multilabel:
            return torch.arange(self.num_classes)
        labels = self.train_labels.float()
        rows = [labels[idx].mean(0) if len(idx) else torch.zeros(self.num_classes) for idx in self.group_indices("train")]
        return torch.stack(rows)

    def primary_groups(self, labels: torch.Tensor) -> torch.Tensor:
        """One group per image of ``labels``: the class (single-label); multi-label, the first finding it
        shows, or the "no finding" group."""
        if not self.multilabel:
            return labels.clone()
        return primary_groups(labels)

    def __repr__(self) -> str:
        return (f"ImageDataset({self.name!r}, {self.task}, images {self.image_shape}, splits {self.split_sizes}, "
                f"{self.memory_bytes / 2**20:.1f} MiB of images)")


def primary_groups(labels: torch.Tensor) -> torch.Tensor:
    """(N, K) multi-hot (or soft) labels → (N,) int64: the first label ≥ 0.5, else K ("no finding")."""
    positive = labels > 0.5
    k = labels.shape[1]
    first = torch.where(positive.any(1), positive.float().argmax(1), torch.full((len(labels),), k))
    return first.to(torch.int64)
