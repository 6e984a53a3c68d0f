"""A PNG picture of an image set: one row per class (per group of findings for a multi-label set)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def write_class_grid(path, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                     max_per_class: int = 10, scale: int = 3, pad: int = 2) -> Path:
    """images: (N, C, H, W) in [0, 1]; writes a grid with row c holding class c's first images (``labels``:
    (N,) class, or group for a multi-label set, in [0, num_classes))."""
    from PIL import Image

    n, c, h, w = images.shape
    cols = max(1, min(max_per_class, max([int((labels == k).sum()) for k in range(num_classes)] + [1])))
    canvas = np.full((num_classes * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for k in range(num_classes):
        for j, idx in enumerate(torch.nonzero(labels == k).flatten()[:cols].tolist()):
            tile = (images[idx].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            if c == 1:
                tile = np.repeat(tile, 3, axis=2)
            y, x = pad + k * (h + pad), pad + j * (w + pad)
            canvas[y : y + h, x : x + w] = tile
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).resize((canvas.shape[1] * scale, canvas.shape[0] * scale), Image.NEAREST).save(path)
    return path
