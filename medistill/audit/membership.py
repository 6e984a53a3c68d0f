"""Membership inference by a loss-threshold attack, scored with a rank-based AUC.

The question: do networks trained on the synthetic set fit the *real training images it was made
from* better than unseen real images? The attacker thresholds the per-image cross-entropy loss
(lower loss → "member"); over all thresholds that is the ROC of the score −loss, whose area is the
Mann–Whitney statistic P(score_member > score_nonmember) + ½·P(tie). 0.5 = no leak, 1.0 = every
member is told apart. Members: the real training split; non-members: the real test split.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..data import ImageDataset, ImageSet
from ..evaluate import TrainConfig, train_network
from ..models import build_model


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``values`` with ties given their average rank (as scipy.stats.rankdata)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    boundaries = np.flatnonzero(np.diff(sorted_values)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(values)]])
    ranks = np.empty(len(values))
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + 1 + e) / 2.0
    return ranks


def rank_auc(positive_scores, negative_scores) -> float:
    """P(positive > negative) + ½ P(tie) from ranks: (R₊ − n₊(n₊+1)/2) / (n₊ n₋). O((n₊+n₋) log)."""
    pos, neg = np.asarray(positive_scores, float).ravel(), np.asarray(negative_scores, float).ravel()
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("rank_auc needs at least one positive and one negative score")
    ranks = average_ranks(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def loss_attack_auc(member_losses, nonmember_losses) -> float:
    """AUC of the loss-threshold attack: members are predicted by low loss (score = −loss)."""
    return rank_auc(-np.asarray(member_losses, float), -np.asarray(nonmember_losses, float))


@dataclass
class MembershipConfig:
    """Shadow training for the attack: ``num_models`` ConvNets × ``epochs`` on the synthetic set, the
    evaluation optimiser (lr: the set's learned lr if any, else 0.01), no augmentation, seeded."""

    num_models: int = 2
    epochs: int = 100
    model: str = "convnet"
    seed: int = 0
    device: str = "cpu"


@torch.no_grad()
def per_image_losses(net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """Cross-entropy of each image (N,) as numpy."""
    device = next(net.parameters()).device
    net.eval()
    out = [F.cross_entropy(net(images[i : i + batch_size].to(device)), labels[i : i + batch_size].to(device),
                           reduction="none").cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(out).double().numpy()


def membership_losses(image_set: ImageSet, dataset: ImageDataset, config: MembershipConfig) -> tuple[np.ndarray, np.ndarray]:
    """Mean over the shadow models of each train (member) and test (non-member) image's loss."""
    lr = image_set.learned_lr or 0.01
    train_cfg = TrainConfig(epochs=config.epochs, lr=lr)
    members = np.zeros(len(dataset.train_labels))
    nonmembers = np.zeros(len(dataset.test_labels))
    for k in range(config.num_models):
        generator = torch.Generator().manual_seed(config.seed * 1000 + 500 + k)
        net = build_model(config.model, dataset.channels, dataset.num_classes, dataset.image_size,
                          generator=generator).to(config.device)
        train_network(net, image_set.images, image_set.labels, train_cfg, generator)
        members += per_image_losses(net, dataset.train_images, dataset.train_labels) / config.num_models
        nonmembers += per_image_losses(net, dataset.test_images, dataset.test_labels) / config.num_models
    return members, nonmembers
