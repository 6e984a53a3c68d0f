"""Converting a normalised (N, C, H, W) set to MedMNIST's array layout and back.

* ``train_images``: uint8 (N, H, W) for 1 channel, (N, H, W, C) otherwise, as MedMNIST stores images:
  ``round(clip(pixels, 0, 1) * 255)``. Distilled pixels can leave [0, 1]; the clip loses that.
* ``train_images_float``: float32, same layout, the de-normalised pixels ``x * std[c] + mean[c]``
  (not clipped): what the uint8 images approximate.
* ``train_images_normalized``: float32 (N, C, H, W), the set's tensor exactly as distilled and as a
  network is trained on it (``(pixels - mean[c]) / std[c]``, up to float rounding).
* ``train_labels``: (N, 1) uint8 (int64 beyond 256 classes), as MedMNIST.

A set distilled in ZCA space (``zca`` given): ``train_images_normalized`` is the whitened tensor as
distilled and trained on; the float and uint8 images are de-whitened first (``zca.invert``), so they
are pictures a person can look at, and ``zca.npz`` in the package maps them back.
"""
from __future__ import annotations

import numpy as np
import torch


def channels_last(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) → (N, H, W) when C == 1, else (N, H, W, C)."""
    return images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)


def channels_first(images: np.ndarray) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) → (N, C, H, W)."""
    return images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)


def denormalized_pixels(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> np.ndarray:
    """Normalised (N, C, H, W) → float32 pixels (N, C, H, W), not clipped."""
    x = images.detach().float().cpu() * std.float().view(1, -1, 1, 1) + mean.float().view(1, -1, 1, 1)
    return x.numpy().astype(np.float32)


def quantize_uint8(pixels: np.ndarray) -> np.ndarray:
    """Float pixels → uint8 by round(clip(p, 0, 1) * 255)."""
    return np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)


def label_array(labels: torch.Tensor, num_classes: int) -> np.ndarray:
    """(N,) int → (N, 1), uint8 like MedMNIST when the classes fit; (N, K) multi-label targets → (N, K) uint8
    multi-hot (a target ≥ 0.5 counts as present), ChestMNIST's layout (the exact targets travel apart)."""
    if labels.ndim == 2:
        return (labels.cpu().numpy() >= 0.5).astype(np.uint8)
    dtype = np.uint8 if num_classes <= 256 else np.int64
    return labels.cpu().numpy().astype(dtype).reshape(-1, 1)


def zca_arrays(zca) -> dict[str, np.ndarray]:
    """The package's zca.npz: ``mean`` (D,), ``matrix`` (D, D) float32, ``eps`` and ``image_shape`` (C, H, W)."""
    return {"mean": zca.mean.numpy(), "matrix": zca.matrix.numpy(), "eps": np.float64(zca.eps),
            "image_shape": np.asarray(zca.image_shape, dtype=np.int64)}


def medmnist_arrays(images: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                    num_classes: int, zca=None, groups: torch.Tensor | None = None) -> dict[str, np.ndarray]:
    """The package's .npz arrays: MedMNIST keys (train_ filled, val_/test_ empty) plus the float keys.
    ``zca``: the set's transform when it was distilled in ZCA space (pixels are de-whitened). A multi-label
    set (labels (N, K) float targets, ``groups`` (N,)) adds ``train_labels_soft`` (N, K) float32, the exact
    targets networks train on, and ``train_groups`` (N,) int64."""
    viewable = zca.invert(images.detach().float().cpu()) if zca is not None else images
    pixels = denormalized_pixels(viewable, mean, std)
    uint8 = channels_last(quantize_uint8(pixels))
    label = label_array(labels, num_classes)
    empty_images, empty_labels = uint8[:0], label[:0]
    multilabel = {}
    if labels.ndim == 2:
        multilabel = {"train_labels_soft": labels.detach().float().cpu().numpy(),
                      "train_groups": groups.cpu().numpy().astype(np.int64)}
    return {**multilabel,
        "train_images": uint8,
        "train_labels": label,
        "val_images": empty_images,
        "val_labels": empty_labels,
        "test_images": empty_images,
        "test_labels": empty_labels,
        "train_images_float": np.ascontiguousarray(channels_last(pixels)),
        "train_images_normalized": images.detach().float().cpu().numpy(),
    }
