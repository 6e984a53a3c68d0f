"""The random streams of a distillation, laid out so that splitting classes across ranks changes nothing.

* one **shared** generator seeded with ``seed``: network initialisation, DC's inner-loop order and
  unseeded DSA, MTT's draws — every rank advances it identically;
* one generator **per class** seeded from ``(seed, class)``: that class's initial images and real
  batches and its Siamese DSA draws — only the rank owning the class advances it.

(Before per-class streams, one generator fed everything in class order, so results from that
version differ from this one for the same seed; checkpoints of that version are refused.)
"""
from __future__ import annotations

import hashlib

import torch


def class_seed(seed: int, c: int) -> int:
    """A 63-bit seed for class ``c``'s stream, independent of the shared stream's ``seed``."""
    digest = hashlib.sha256(f"medistill class stream {seed} {c}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def class_generators(seed: int, num_classes: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(class_seed(seed, c)) for c in range(num_classes)]
