"""Loading a user's own labelled image folder: ``root/<class name>/<image files>``.

Layouts:

* ``root/<split>/<class>/<images>`` with split folders named as usual, case-insensitively
  (``train``/``training``, ``val``/``valid``/``validation``, ``test``/``testing``), or named
  explicitly with ``split_dirs={"train": "Training", "test": "Testing"}``;
* ``root/<class>/<images>`` with no split folder.

Without a test split, ``test_fraction`` of each class of the train split is held out as the test split
(stratified, seeded with ``split_seed``, not with the training seed: every run sees the same test set).
Images may sit in sub-folders of a class folder; hidden files and folders are skipped.

Nothing is printed: what the loader decided (splits, channels, resizing, skipped files) is returned as
sentences in ``dataset.notices``, and where the data came from in ``dataset.provenance`` (path, file
count, content hash); ``dataset.md5`` is a fingerprint of the content and of the settings that shaped
the tensors, so caches and run folders keyed by it tell two loads of a folder apart.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from .dataset import ImageDataset
from .errors import DataError
from .folder_layout import SPLITS, SplitFiles, class_names_of, find_splits, parse_split_dirs, scan_split
from .folder_read import GREY_TOLERANCE, READER_VERSION, RESIZE_MODES, Decoded, decode

DEFAULT_SIZE = 28  # the ConvNet's protocol size (MedMNIST's 28 px); --size 64/128/224 for more detail
DEFAULT_TEST_FRACTION = 0.2
CHANNEL_CHOICES = ("auto", "1", "3")
_CHUNK = 1024  # images converted to float at a time


def _fmt(n: int) -> str:
    return f"{n:,}"


def _check_options(size, channels, resize, test_fraction, val_fraction) -> str:
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise DataError(f"size must be a positive number of pixels, got {size!r}")
    channels = str(channels).lower()
    if channels not in CHANNEL_CHOICES:
        raise DataError(f"channels must be auto, 1 or 3, got {channels!r}")
    if resize not in RESIZE_MODES:
        raise DataError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
    if not 0 < test_fraction < 1:
        raise DataError(f"test fraction must be between 0 and 1 (exclusive), got {test_fraction}")
    if not 0 <= val_fraction < 1 or test_fraction + val_fraction >= 1:
        raise DataError(f"val fraction must be ≥ 0 with test + val fractions below 1, got {val_fraction}")
    return channels


def _held_out_counts(n: int, fractions: list[float]) -> list[int]:
    """How many of a class's ``n`` images go to each held-out split: ≥ 1 each, ≥ 1 left for training."""
    counts = [max(1, round(n * f)) for f in fractions]
    while sum(counts) > n - 1 and max(counts) > 1:
        counts[counts.index(max(counts))] -= 1
    return counts


def _stratified(labels: np.ndarray, fractions: list[float], seed: int) -> list[np.ndarray]:
    """Positions in ``labels`` for [train, *held-out parts], per class, shuffled with ``seed``."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        members = members[rng.permutation(len(members))]
        start = 0
        for k, count in enumerate(_held_out_counts(len(members), fractions), start=1):
            parts[k].append(members[start : start + count])
            start += count
        parts[0].append(members[start:])
    return [np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts]


def _check_holdout_sizes(split: SplitFiles, class_names: list[str], parts: int, label: str) -> None:
    counts = np.bincount(np.asarray(split.labels, np.int64), minlength=len(class_names))
    small = [f"{class_names[c]} ({counts[c]})" for c in range(len(class_names)) if counts[c] < parts + 1]
    if small:
        raise DataError(f"{label}: class(es) {', '.join(small)} have too few images to split: each class needs at least "
                        f"{parts + 1} (one for training, one for each held-out split); add images or a test split folder")


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return Path(os.path.relpath(path, root)).as_posix()


class _Reader:
    """Reads files into one uint8 buffer at the target size, hashing their bytes on the way."""

    def __init__(self, n: int, size: int, channels: str):
        self.channels = channels
        self.buffer = np.empty((n, size, size, 3) if channels == "3" else (n, size, size), np.uint8)
        self.colour: dict[int, np.ndarray] = {}  # auto: RGB pixels of files that are not exactly grey
        self.spread = np.zeros(n, np.float32)
        self.stored_grey = np.zeros(n, bool)
        self.high_bit = np.zeros(n, bool)
        self.sizes = np.zeros((n, 2), np.int64)
        self.digests: list[str | None] = [None] * n
        self.bytes = 0

    def read(self, i: int, path: Path, size: int, resize: str) -> None:
        data = path.read_bytes()
        self.bytes += len(data)
        self.digests[i] = hashlib.md5(data).hexdigest()
        d: Decoded = decode(data, size, resize)
        self.spread[i], self.stored_grey[i], self.high_bit[i] = d.spread, d.rgb is None, d.high_bit
        self.sizes[i] = d.source_size
        if self.channels == "3":
            self.buffer[i] = d.grey[..., None] if d.rgb is None else d.rgb
        else:
            self.buffer[i] = d.grey
            if self.channels == "auto" and d.spread > 0:
                self.colour[i] = d.rgb


def _channel_notice(reader: _Reader, keep: np.ndarray, files: list[str], requested: str) -> tuple[int, str]:
    spread, stored_grey = reader.spread[keep], reader.stored_grey[keep]
    n_colour = int((spread > GREY_TOLERANCE).sum())
    n_faint = int(((spread > 0) & (spread <= GREY_TOLERANCE)).sum())
    n_equal = int((~stored_grey & (spread == 0)).sum())
    n_grey = int(stored_grey.sum())
    stored = ", ".join(x for x in (f"{_fmt(n_grey)} stored grey" if n_grey else "",
                                   f"{_fmt(n_equal)} stored as RGB with three equal channels" if n_equal else "") if x)
    faint = (f", {_fmt(n_faint)} stored as RGB with faint colour (mean channel spread up to "
             f"{spread[spread <= GREY_TOLERANCE].max():.1f} of 255, under the {GREY_TOLERANCE:g} tolerance: JPEG noise or a "
             "tint), converted to luminance") if n_faint else ""
    examples = [files[int(i)] for i in np.flatnonzero(spread > GREY_TOLERANCE)[:3]]
    if requested == "auto":
        if n_colour == 0:
            return 1, (f"channels: 1 (auto: every image is grey — {stored}{faint}); pass --channels 3 to keep three channels")
        return 3, (f"channels: 3 (auto: {_fmt(n_colour)} of {_fmt(len(spread))} images have colour, e.g. "
                   f"{', '.join(examples)}); colour is kept; pass --channels 1 to convert to grey")
    if requested == "1":
        lost = (f"{_fmt(n_colour)} colour image(s) converted to grey (luminance), e.g. {', '.join(examples)}"
                if n_colour else "every image is grey, nothing was lost")
        return 1, f"channels: 1 (as asked): {lost}"
    note = ("every image is grey, so the three channels are (nearly) copies of one another (--channels auto would use 1)"
            if n_colour == 0 else f"{_fmt(n_colour)} of {_fmt(len(spread))} images have colour")
    return 3, f"channels: 3 (as asked): {note}"


def _size_notice(reader: _Reader, keep: np.ndarray, size: int, resize: str) -> str:
    sizes = reader.sizes[keep]
    w, h = sizes[:, 0], sizes[:, 1]
    if (w == size).all() and (h == size).all():
        return f"size: every image is already {size}×{size} px; not resized"
    span = (f"{w[0]}×{h[0]} px" if (w == w[0]).all() and (h == h[0]).all() else
            f"widths {w.min()}–{w.max()} px and heights {h.min()}–{h.max()} px")
    square = w == h
    aspect = np.maximum(w, h) / np.minimum(w, h)
    how = {"stretch": "by stretching (aspect ratio not kept; --resize pad keeps it, --resize crop takes the centre square)",
           "pad": "keeping the aspect ratio, padded with black to a square (--resize pad)",
           "crop": "from the centred square of each image (--resize crop; the rest is cut off)"}[resize]
    shape = (f", {_fmt(int((~square).sum()))} not square, aspect ratio up to {aspect.max():.2f}, {how}"
             if not square.all() else ", all square, so the aspect ratio is kept")
    enlarged = int((np.minimum(w, h) < size).sum())
    up = f"; {_fmt(enlarged)} image(s) smaller than {size} px were enlarged" if enlarged else ""
    return (f"size: {_fmt(len(sizes))} images of {span} resized to {size}×{size} (--size; default {DEFAULT_SIZE}, "
            f"the ConvNet's protocol size){shape}{up}")


def _stats(buffer: np.ndarray, idx: np.ndarray, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (unbiased) std of the [0, 1] pixels of ``buffer[idx]``, exact, from a histogram."""
    histogram = np.zeros((channels, 256), np.int64)
    for start in range(0, len(idx), _CHUNK):
        chunk = torch.from_numpy(buffer[idx[start : start + _CHUNK]].reshape(-1, channels))
        for c in range(channels):
            histogram[c] += torch.bincount(chunk[:, c], minlength=256).numpy()
    levels = np.arange(256, dtype=np.float64) / 255.0
    count = histogram.sum(1).astype(np.float64)
    mean = histogram @ levels / count
    var = (histogram @ (levels * levels) - count * mean * mean) / np.maximum(count - 1, 1)
    return torch.from_numpy(mean).float(), torch.from_numpy(np.sqrt(np.maximum(var, 0.0))).clamp_min(1e-6).float()


def _normalised(buffer: np.ndarray, idx: np.ndarray, channels: int, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(len(idx), C, S, S) float32 ``(x / 255 - mean) / std``, filled in chunks (no full-size temporaries)."""
    size = buffer.shape[1]
    out = torch.empty((len(idx), channels, size, size), dtype=torch.float32)
    shift, scale = (255.0 * mean).view(1, -1, 1, 1), (255.0 * std).view(1, -1, 1, 1)
    for start in range(0, len(idx), _CHUNK):
        x = torch.from_numpy(buffer[idx[start : start + _CHUNK]])
        x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)
        out[start : start + len(x)].copy_(x).sub_(shift).div_(scale)  # (x / 255 - mean) / std, in place
    return out


def load_image_folder(
    root,
    size: int = DEFAULT_SIZE,
    channels: int | str = "auto",
    resize: str = "stretch",
    split_dirs: str | dict | None = None,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    val_fraction: float = 0.0,
    split_seed: int = 0,
    skip_unreadable: bool = False,
) -> ImageDataset:
    """Read ``root/[<split>/]<class>/<image>`` into an :class:`ImageDataset` of ``size`` × ``size`` images.

    ``channels``: ``"auto"`` (1 when every image is grey, even stored as RGB, else 3), 1 or 3.
    ``resize``: ``"stretch"`` (default), ``"pad"`` (keep the aspect ratio, pad with black) or ``"crop"``
    (the centred square). ``split_dirs``: ``{"train": "Training", "test": "Testing"}`` or the same as
    ``"train=Training,test=Testing"``. ``test_fraction`` / ``val_fraction``: the share of each class held
    out when the folder has no test / val split (no val split is made unless ``val_fraction`` > 0).
    ``skip_unreadable``: leave out files PIL cannot read instead of raising (they are counted in a notice).
    Raises :class:`DataError` for every layout mistake before any image is decoded.
    """
    started = time.perf_counter()
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    requested = _check_options(size, channels, resize, test_fraction, val_fraction)
    split_dirs = parse_split_dirs(split_dirs)
    folders, notices = find_splits(root, split_dirs)
    train_label = _rel(folders["train"], root) if folders["train"] != root else str(root)
    class_names = class_names_of(folders["train"], train_label)
    scanned = {s: scan_split(f, class_names, f"{root.name}/{_rel(f, root)}" if f != root else str(root))
               for s, f in folders.items()}
    held_out = [s for s, f in (("test", test_fraction), ("val", val_fraction)) if s not in scanned and f > 0]
    if held_out:
        _check_holdout_sizes(scanned["train"], class_names, len(held_out), train_label)

    # every file once, in split order: decode and hash
    order = [s for s in SPLITS if s in scanned]
    files = [f for s in order for f in scanned[s].files]
    labels = np.asarray([y for s in order for y in scanned[s].labels], np.int64)
    owner = np.concatenate([np.full(len(scanned[s].files), k) for k, s in enumerate(order)])
    rel = [_rel(f, root) for f in files]
    reader = _Reader(len(files), size, requested)
    failed: list[tuple[int, str]] = []
    for i, path in enumerate(files):
        try:
            reader.read(i, path, size, resize)
        except MemoryError:
            raise
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, … for a damaged file
            failed.append((i, f"{type(exc).__name__}: {exc}"))
    if failed and not skip_unreadable:
        shown = "; ".join(f"{files[i]} ({why})" for i, why in failed[:5])
        more = f"; and {len(failed) - 5} more" if len(failed) > 5 else ""
        raise DataError(f"{len(failed)} unreadable image file(s): {shown}{more}. Replace or remove them, or pass "
                        "--skip-unreadable (skip_unreadable=True) to leave them out")
    keep = np.ones(len(files), bool)
    keep[[i for i, _ in failed]] = False

    # splits as positions into the buffer
    split_idx: dict[str, np.ndarray] = {}
    for k, s in enumerate(order):
        idx = np.flatnonzero((owner == k) & keep)
        present = np.bincount(labels[idx], minlength=len(class_names))
        if (present == 0).any():
            empty = [class_names[c] for c in np.flatnonzero(present == 0)]
            raise DataError(f"{_rel(folders[s], root) or root}: class(es) {', '.join(empty)} have no readable image left "
                            f"after skipping {len(failed)} unreadable file(s)")
        split_idx[s] = idx
    if held_out:
        pool = split_idx["train"]
        counts = np.bincount(labels[pool], minlength=len(class_names))
        if counts.min() < len(held_out) + 1:
            raise DataError(f"{train_label}: class {class_names[int(counts.argmin())]} has {counts.min()} readable "
                            f"image(s), too few to hold out a test split")
        parts = _stratified(labels[pool], [test_fraction if s == "test" else val_fraction for s in held_out], split_seed)
        split_idx["train"] = pool[parts[0]]
        for s, part in zip(held_out, parts[1:]):
            split_idx[s] = pool[part]

    n_channels, channel_notice = _channel_notice(reader, keep, rel, requested)
    buffer = reader.buffer
    if requested == "auto" and n_channels == 3:  # grey files are three equal channels; colour ones as read
        buffer = np.repeat(reader.buffer[..., None], 3, axis=-1)
        for i, pixels in reader.colour.items():
            buffer[i] = pixels
    reader.colour.clear()

    # notices: splits, channels, size, skipped and ignored files, time
    sizes = {s: len(idx) for s, idx in split_idx.items()}
    if held_out:
        where = "no split folders" if folders["train"] == root else f"no {'/'.join(held_out)} split folder"
        parts_text = " and ".join(f"{(test_fraction if s == 'test' else val_fraction):.0%} as the {s} split" for s in held_out)
        notices.insert(0, f"split: {where}, so {parts_text} were held out of each class of {train_label} (stratified, "
                          f"split seed {split_seed}; --test-fraction, default {DEFAULT_TEST_FRACTION:g}): "
                          + ", ".join(f"{_fmt(sizes[s])} {s}" for s in SPLITS if s in sizes) + " images")
    else:
        notices.insert(0, "split: " + ", ".join(f"{s} = {_rel(folders[s], root)}/ ({_fmt(sizes[s])} images)"
                                                 for s in SPLITS if s in folders)
                       + ("" if "val" in folders else "; no val split"))
    notices.append(channel_notice)
    notices.append(_size_notice(reader, keep, size, resize))
    n_high = int(reader.high_bit[keep].sum())
    if n_high:
        notices.append(f"pixels: {_fmt(n_high)} image(s) have 16-bit or float pixels; each was scaled from its own "
                       "min–max to 0–255")
    if failed:
        shown = ", ".join(f"{rel[i]} ({why})" for i, why in failed[:5]) + (f", and {len(failed) - 5} more" if len(failed) > 5 else "")
        notices.append(f"skipped {_fmt(len(failed))} unreadable file(s) (--skip-unreadable): {shown}")
    ignored: dict[str, int] = {}
    for split in scanned.values():
        for suffix, n in split.ignored.items():
            ignored[suffix] = ignored.get(suffix, 0) + n
    if ignored:
        notices.append(f"ignored {_fmt(sum(ignored.values()))} file(s) that are not images: "
                       + ", ".join(f"{n} {s}" for s, n in sorted(ignored.items())))
    seconds = time.perf_counter() - started

    # provenance: the folder's content (all image files, skipped ones included) and what shaped the tensors
    lines = "".join(f"{reader.digests[i] or 'unreadable'}  {rel[i]}\n" for i in sorted(range(len(rel)), key=rel.__getitem__))
    content_md5 = hashlib.md5(lines.encode()).hexdigest()
    settings = {"size": int(size), "channels": n_channels, "resize": resize,
                "splits": {s: _rel(f, root) for s, f in folders.items()},
                "held_out": {s: (test_fraction if s == "test" else val_fraction) for s in held_out},
                "split_seed": split_seed if held_out else None,
                "skipped": sorted(rel[i] for i, _ in failed), "reader": READER_VERSION}
    fingerprint = hashlib.md5(json.dumps({"content_md5": content_md5, "class_names": class_names, **settings},
                                         sort_keys=True).encode()).hexdigest()
    provenance = {"kind": "image_folder", "path": str(root.resolve()), "files": len(files), "bytes": reader.bytes,
                  "content_md5": content_md5,
                  "content_md5_of": "md5sum-style lines '<file md5>  <relative path>' of every image file, sorted by path",
                  "fingerprint": fingerprint, "channels_requested": requested, **settings}
    notices.append(f"read {_fmt(len(files))} files ({reader.bytes / 2**20:.1f} MiB) in {seconds:.1f} s; "
                   f"content MD5 {content_md5}")

    mean, std = _stats(buffer, split_idx["train"], n_channels)
    empty = np.zeros(0, np.int64)
    tensors = {s: _normalised(buffer, split_idx.get(s, empty), n_channels, mean, std) for s in SPLITS}
    targets = {s: torch.from_numpy(labels[split_idx.get(s, empty)]) for s in SPLITS}
    return ImageDataset(
        name=root.resolve().name,
        train_images=tensors["train"],
        train_labels=targets["train"],
        val_images=tensors["val"],
        val_labels=targets["val"],
        test_images=tensors["test"],
        test_labels=targets["test"],
        mean=mean,
        std=std,
        class_names=class_names,
        task="multi-class",
        md5=fingerprint,
        source=str(root),
        extra={"size": int(size), "resize": resize, "load_seconds": round(seconds, 2)},
        provenance=provenance,
        notices=notices,
    )


def reload_image_folder(provenance: dict, recorded_md5: str | None = None, path=None,
                        allow_mismatch: bool = False) -> ImageDataset:
    """The image folder a set was distilled from, read again with the settings its ``provenance`` records
    (size, channels, resizing, split folders, held-out fractions and seed, skipped files), so that its test
    split is the one the set was made against. ``path`` overrides the recorded location (a moved folder).

    Raises :class:`DataError` when the folder is gone, or when its content or settings no longer give the
    recorded fingerprint ``recorded_md5`` (unless ``allow_mismatch``): the test split would be another one.
    """
    where = Path(path or provenance["path"]).expanduser()
    if not where.is_dir():
        raise DataError(f"the set was distilled from the image folder {provenance['path']}, which is not there; "
                        "pass --dataset PATH where the folder now lies")
    splits = {s: f for s, f in (provenance.get("splits") or {}).items() if f not in (".", "")}
    held_out = provenance.get("held_out") or {}
    dataset = load_image_folder(
        where, size=provenance["size"], channels=provenance["channels"], resize=provenance["resize"],
        split_dirs=splits or None, test_fraction=held_out.get("test", DEFAULT_TEST_FRACTION),
        val_fraction=held_out.get("val", 0.0), split_seed=provenance.get("split_seed") or 0,
        skip_unreadable=bool(provenance.get("skipped")))
    if recorded_md5 and dataset.md5 != recorded_md5 and not allow_mismatch:
        raise DataError(f"{where}: the folder's content or load settings changed since the set was distilled "
                        f"(fingerprint {dataset.md5}, recorded {recorded_md5}; content MD5 "
                        f"{dataset.provenance['content_md5']}, recorded {provenance.get('content_md5')}); "
                        "pass --allow-md5-mismatch to score it anyway")
    return dataset
