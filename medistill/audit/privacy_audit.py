"""The privacy audit of a synthetic set against the real training split it was made from.

For each synthetic image: its nearest real training images by (a) L2 in pixel space (de-normalised
pixels, [0, 1] scale, not clipped), (b) L2 in the embedding of a briefly trained, seeded ConvNet
(:mod:`.embedding`), (c) SSIM of pixels clipped to [0, 1] (:mod:`.ssim`). Each is set against the
same statistic of the real data itself: every real training image's nearest *other* real training
image (leave-one-out; for large splits a seeded sample of ``max_reference_queries`` of them against
the whole split).

Flag rule (per space). A synthetic image is flagged when it is closer to a real training image than
all but the closest ``quantile`` (default 1 %) of real images are to their nearest other real image
— i.e. below the 1st percentile of real-to-real nearest-neighbour distances (above the 99th
percentile of real-to-real best SSIM) — or when it is a copy up to uint8 rounding (pixel L2 ≤
0.5/255·√D, SSIM ≥ 1 − 1e-6). Why this threshold: two *different* patients' images are almost never
that close (only 1 % of real images have a neighbour that close, and some of those are themselves
near-duplicates in the source data), so a synthetic image that close is as good as a copy of one
patient's image; a quantile adapts to each dataset's scale and to each space, where a fixed number
would not. The headline flag is the pixel-space one (a reproduced image is a pixel-level fact); the
embedding and SSIM flags are reported beside it as supporting evidence.

Membership inference (:mod:`.membership`): a loss-threshold attack on networks trained on the set,
members = real training split, non-members = real test split, rank AUC (0.5 = no leak). Also the
same AUC restricted to the real images that are some synthetic image's pixel nearest neighbour
("targeted"), which is where a leak from real-initialised images would show.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from pathlib import Path

from tqdm.auto import tqdm

from ..atomic_io import atomic_torch_save
from ..models import build_model

from ..data import DataError, ImageDataset, ImageSet
from .embedding import embed_images, train_embedding_network
from .membership import MembershipConfig, loss_attack_auc, membership_losses
from .nearest import nearest_neighbors
from .ssim import most_similar

SPACES = ("pixel_l2", "embedding_l2", "ssim")
CACHE_VERSION = 1


@dataclass
class AuditConfig:
    """k neighbours kept per synthetic image; flag ``quantile`` of the real-to-real distribution;
    ``embed_epochs``/``seed`` of the embedding network; ``membership=None`` skips the attack."""

    k: int = 3
    quantile: float = 0.01
    embed_epochs: int = 10
    seed: int = 0
    max_reference_queries: int = 2000
    membership: MembershipConfig | None = field(default_factory=MembershipConfig)
    device: str = "cpu"
    cache_dir: str | None = None  # keep the real-data side (embedding net, real-to-real NN) here for reuse


@dataclass
class AuditResult:
    """summary: JSON-able numbers; per_image: one dict per synthetic image; arrays: raw distances and
    the images needed for the report's pictures (numpy / tensors, not written to JSON)."""

    summary: dict
    per_image: list[dict]
    arrays: dict


def check_compatible(image_set: ImageSet, dataset: ImageDataset) -> None:
    """DataError when the set cannot have come from ``dataset`` (shape, classes, source MD5), or is multi-label
    (the membership attack thresholds a per-image cross-entropy over one class per image)."""
    if dataset.multilabel or image_set.multilabel:
        raise DataError(f"the privacy audit scores one class per image; {dataset.name} is {dataset.task}, which it "
                        "does not audit")
    shape, expected = tuple(image_set.images.shape[1:]), tuple(dataset.image_shape)
    if shape != expected:
        raise DataError(f"set images are {shape} (C, H, W) but {dataset.name} images are {expected}")
    if image_set.num_classes != dataset.num_classes:
        raise DataError(f"set has {image_set.num_classes} classes, {dataset.name} has {dataset.num_classes}")
    md5 = image_set.metadata.get("dataset_md5")
    if md5 and dataset.md5 and md5 != dataset.md5:
        raise DataError(f"the set was made from a {dataset.name} file with MD5 {md5}, the file here has {dataset.md5}: "
                        "auditing against other data would say nothing")


def _reference_queries(n: int, cap: int, seed: int) -> torch.Tensor:
    if n <= cap:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:cap].sort().values


def _quantile(values: torch.Tensor, q: float) -> float:
    return float(torch.quantile(values.double(), q))


def _space_summary(syn_best: torch.Tensor, ref_best: torch.Tensor, threshold: float, flagged: torch.Tensor,
                   higher_is_closer: bool) -> dict:
    syn_med, ref_med = float(syn_best.median()), float(ref_best.median())
    out = {"threshold": threshold, "flagged": int(flagged.sum()), "flagged_indices": torch.nonzero(flagged).flatten().tolist(),
           "synthetic_nn_median": syn_med, "synthetic_nn_min" if not higher_is_closer else "synthetic_nn_max":
           float(syn_best.max() if higher_is_closer else syn_best.min()), "real_nn_median": ref_med,
           "real_nn_quantiles": {str(p): _quantile(ref_best, p) for p in (0.01, 0.05, 0.25, 0.5)},
           "reference_queries": int(ref_best.numel())}
    if not higher_is_closer:
        out["median_ratio"] = syn_med / ref_med if ref_med > 0 else math.nan
        out["real_exact_duplicates"] = int((ref_best == 0).sum())
    return out


def real_reference(dataset: ImageDataset, config: AuditConfig) -> dict:
    """The real-data side of the audit, which depends only on (dataset file, seed, embed_epochs,
    max_reference_queries): the embedding network's weights, the real embeddings, and each space's
    leave-one-out real-to-real nearest-neighbour statistic (1-D tensors). Cached in ``config.cache_dir``."""
    key = hashlib.sha1(json.dumps([dataset.md5, dataset.name, config.seed, config.embed_epochs,
                                   config.max_reference_queries, CACHE_VERSION]).encode()).hexdigest()[:16]
    cached = Path(config.cache_dir) / f"real-reference-{dataset.name}-{key}.pt" if config.cache_dir else None
    if cached is not None and cached.exists():
        return torch.load(cached, map_location="cpu", weights_only=True)
    dev, n = config.device, len(dataset.train_labels)
    ref = _reference_queries(n, config.max_reference_queries, config.seed)
    real_pixels = dataset.denormalize(dataset.train_images)
    pix_ref, _ = nearest_neighbors(real_pixels[ref].flatten(1), real_pixels.flatten(1), 1, exclude_index=ref, device=dev)
    net = train_embedding_network(dataset, config.seed, config.embed_epochs, device=dev)
    real_emb = embed_images(net, dataset.train_images)
    emb_ref, _ = nearest_neighbors(real_emb[ref], real_emb, 1, exclude_index=ref, device=dev)
    clipped = real_pixels.clamp(0, 1)
    ssim_ref, _ = most_similar(clipped[ref], clipped, 1, exclude_index=ref, device=dev)
    out = {"reference_queries": ref, "pixel_ref": pix_ref[:, 0], "embedding_ref": emb_ref[:, 0], "ssim_ref": ssim_ref[:, 0],
           "real_embedding": real_emb, "embedding_state": {k: v.cpu() for k, v in net.state_dict().items()}}
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(out, cached)
    return out


def run_audit(image_set: ImageSet, dataset: ImageDataset, config: AuditConfig = AuditConfig(),
              progress: bool = True) -> AuditResult:
    """Audit ``image_set`` against ``dataset``'s training split; see the module docstring."""
    check_compatible(image_set, dataset)
    if image_set.zca is not None:  # a ZCA set is compared with the real images de-whitened, in their space
        image_set = dataclasses.replace(image_set, images=image_set.normalized_images(), zca=None)
    steps = tqdm(total=3 + (config.membership is not None), desc="audit", unit="step", disable=not progress)
    n, s = len(dataset.train_labels), image_set.images.shape[0]
    k = min(config.k, n - 1)
    dev = config.device
    syn_pixels = (image_set.images.detach().float().cpu() * image_set.std.view(1, -1, 1, 1)
                  + image_set.mean.view(1, -1, 1, 1))
    real_pixels = dataset.denormalize(dataset.train_images)
    dim = syn_pixels[0].numel()

    steps.set_postfix_str("real-to-real reference")
    real = real_reference(dataset, config)
    steps.update(1)
    steps.set_postfix_str("nearest real images")
    pix_d, pix_i = nearest_neighbors(syn_pixels.flatten(1), real_pixels.flatten(1), k, device=dev)
    pix_ref = real["pixel_ref"]
    net = build_model("convnet", dataset.channels, dataset.num_classes, dataset.image_size)
    net.load_state_dict(real["embedding_state"])
    syn_emb, real_emb = embed_images(net.to(dev), image_set.images.detach().float()), real["real_embedding"]
    emb_d, emb_i = nearest_neighbors(syn_emb, real_emb, k, device=dev)
    emb_ref = real["embedding_ref"]
    syn_clipped, real_clipped = syn_pixels.clamp(0, 1), real_pixels.clamp(0, 1)
    ssim_v, ssim_i = most_similar(syn_clipped, real_clipped, k, device=dev)
    ssim_ref = real["ssim_ref"]
    steps.update(1)

    q = config.quantile
    duplicate_l2 = 0.5 / 255 * math.sqrt(dim)
    thresholds = {"pixel_l2": _quantile(pix_ref, q), "embedding_l2": _quantile(emb_ref, q),
                  "ssim": _quantile(ssim_ref, 1 - q)}
    flags = {"pixel_l2": (pix_d[:, 0] < thresholds["pixel_l2"]) | (pix_d[:, 0] <= duplicate_l2),
             "embedding_l2": (emb_d[:, 0] < thresholds["embedding_l2"]) | (emb_d[:, 0] <= 1e-6 * float(emb_ref.median())),
             "ssim": (ssim_v[:, 0] > thresholds["ssim"]) | (ssim_v[:, 0] >= 1 - 1e-6)}
    spaces = {"pixel_l2": _space_summary(pix_d[:, 0], pix_ref, thresholds["pixel_l2"], flags["pixel_l2"], False),
              "embedding_l2": _space_summary(emb_d[:, 0], emb_ref, thresholds["embedding_l2"], flags["embedding_l2"], False),
              "ssim": _space_summary(ssim_v[:, 0], ssim_ref, thresholds["ssim"], flags["ssim"], True)}
    spaces["pixel_l2"]["duplicate_tolerance"] = duplicate_l2
    steps.update(1)

    membership = None
    member_losses = nonmember_losses = None
    if config.membership is not None:
        steps.set_postfix_str("membership inference")
        mcfg = dataclasses.replace(config.membership, device=dev)
        member_losses, nonmember_losses = membership_losses(image_set, dataset, mcfg)
        targeted = torch.unique(pix_i[:, 0]).numpy()
        membership = {"attack_auc": loss_attack_auc(member_losses, nonmember_losses),
                      "targeted_attack_auc": loss_attack_auc(member_losses[targeted], nonmember_losses),
                      "targeted_members": int(len(targeted)), "members": int(n), "nonmembers": int(len(nonmember_losses)),
                      "member_loss_median": float(np.median(member_losses)),
                      "nonmember_loss_median": float(np.median(nonmember_losses)),
                      "config": {**dataclasses.asdict(mcfg), "lr": image_set.learned_lr or 0.01, "augmentation": None}}
        steps.update(1)
    steps.close()

    per_image = []
    labels = image_set.labels.tolist()
    for j in range(s):
        per_image.append({
            "index": j, "label": labels[j],
            "pixel_l2": {"distances": pix_d[j].tolist(), "real_indices": pix_i[j].tolist()},
            "embedding_l2": {"distances": emb_d[j].tolist(), "real_indices": emb_i[j].tolist()},
            "ssim": {"values": ssim_v[j].tolist(), "real_indices": ssim_i[j].tolist()},
            "real_labels_pixel_nn": dataset.train_labels[pix_i[j]].tolist(),
            "flagged": {space: bool(flags[space][j]) for space in SPACES},
        })
    meta = image_set.metadata
    summary = {
        "set": {"dataset": dataset.name, "dataset_md5": dataset.md5, "method": meta.get("method"), "ipc": meta.get("ipc"),
                "images": s, "seed": meta.get("seed")},
        "real_train_images": n,
        "flag_rule": (f"closer than the {q:g} quantile of real-to-real leave-one-out nearest-neighbour distances "
                      f"(SSIM: above the {1 - q:g} quantile of real-to-real best SSIM), or a copy up to uint8 rounding "
                      f"(pixel L2 ≤ 0.5/255·√{dim} = {duplicate_l2:.4f}); headline: pixel_l2"),
        "flagged": spaces["pixel_l2"]["flagged"],
        "flagged_indices": spaces["pixel_l2"]["flagged_indices"],
        "spaces": spaces,
        "membership_inference": membership,
        "privacy": meta.get("privacy"),  # a DP-DM set's guarantee, reported next to these empirical checks
        "config": {**dataclasses.asdict(config), "embedding_network": f"convnet, {config.embed_epochs} epochs on the "
                   f"real train split, seed {config.seed}, evaluation optimiser; 2048-d embed()"},
    }
    arrays = {"pixel_ref": pix_ref.numpy(), "embedding_ref": emb_ref.numpy(), "ssim_ref": ssim_ref.numpy(),
              "pixel_syn": pix_d[:, 0].numpy(), "embedding_syn": emb_d[:, 0].numpy(), "ssim_syn": ssim_v[:, 0].numpy(),
              "synthetic_pixels": syn_clipped, "real_pixels": real_clipped, "member_losses": member_losses,
              "nonmember_losses": nonmember_losses}
    return AuditResult(summary, per_image, arrays)
