"""Decoding one image file of a user's folder to a small uint8 array at the target size.

JPEGs are decoded at a reduced scale when the target is much smaller than the file (``Image.draft``:
the DCT is scaled by 1/2, 1/4 or 1/8, never below the target), so a folder of 224-px JPEGs read at
28 px costs a fraction of a full decode; only the resized array is kept.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

RESIZE_MODES = ("stretch", "pad", "crop")
# An RGB image counts as grey when its channels differ by at most this much on average (per-pixel
# max - min, in 0..255 levels, at the target size): JPEG chroma noise and faint tints of grey scans
# stay under it, while colour photographs (skin, fundus, stained tissue) are tens of levels apart.
GREY_TOLERANCE = 8.0
# Bumped whenever the decoding changes the pixels it returns; part of a folder dataset's fingerprint.
READER_VERSION = 1
_HIGH_BIT_MODES = {"I", "F", "I;16", "I;16B", "I;16L", "I;16N"}


@dataclass
class Decoded:
    grey: np.ndarray  # (S, S) uint8: the file's grey pixels, or the luminance of its RGB pixels
    rgb: np.ndarray | None  # (S, S, 3) uint8 when the file is stored in colour (RGB, palette, CMYK, …), else None
    spread: float  # mean per-pixel channel spread (max - min) of ``rgb`` (0 for a grey file)
    source_size: tuple[int, int]  # (width, height) of the file
    high_bit: bool  # 16-bit or float pixels, scaled from the image's own min-max to 0..255


def _min_max_to_l(im):
    from PIL import Image

    array = np.asarray(im, dtype=np.float64)
    if array.ndim == 3:
        array = array[..., 0]
    lo, hi = float(array.min()), float(array.max())
    scaled = np.zeros(array.shape, np.uint8) if hi <= lo else np.rint((array - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    return Image.fromarray(scaled, mode="L")


def _fit(im, size: int, resize: str):
    from PIL import Image

    bilinear = Image.Resampling.BILINEAR
    w, h = im.size
    if resize == "stretch" or w == h:
        return im.resize((size, size), bilinear)
    if resize == "crop":  # the centred square of side min(w, h), scaled to size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        return im.crop((left, top, left + side, top + side)).resize((size, size), bilinear)
    # pad: the longer side scaled to size, centred on black
    scale = size / max(w, h)
    inner = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), bilinear)
    canvas = Image.new(im.mode, (size, size), 0)
    canvas.paste(inner, ((size - inner.size[0]) // 2, (size - inner.size[1]) // 2))
    return canvas


def decode(data: bytes, size: int, resize: str) -> Decoded:
    """One file's bytes → its pixels at ``size`` × ``size``; raises whatever PIL raises for a bad file."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        source_size = im.size
        if im.format == "JPEG" and im.mode in ("L", "RGB"):
            im.draft(im.mode, (size, size))
        high_bit = im.mode in _HIGH_BIT_MODES
        if high_bit:
            im = _min_max_to_l(im)
        elif im.mode in ("1", "L", "LA", "La"):
            im = im.convert("L")
        elif im.mode != "RGB":
            im = im.convert("RGB")
        im.load()
        fitted = _fit(im, size, resize)
    if fitted.mode == "L":
        return Decoded(np.asarray(fitted), None, 0.0, source_size, high_bit)
    rgb = np.asarray(fitted)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    spread = np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)  # uint8, no overflow
    grey = rgb[..., 0].copy() if not spread.any() else np.asarray(fitted.convert("L"))  # PIL's ITU-R 601 luminance
    return Decoded(grey, rgb, float(spread.mean()), source_size, high_bit)
