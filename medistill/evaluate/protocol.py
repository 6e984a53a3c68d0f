"""The evaluation protocol of REFERENCE.md: train N fresh networks on an image set, score each on the test split.

Reports accuracy, balanced accuracy, AUC (MedMNIST's way) and per-class accuracy as mean ± std over
the models, next to the majority-class rate of the test split (0.73 on BreastMNIST: accuracy alone
can flatter a model that learned nothing).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ..models import build_model
from .metrics import classification_metrics, majority_rate
from .train import Augment, TrainConfig, predict_proba, train_network

SUMMARY_METRICS = ("accuracy", "balanced_accuracy", "auc")


@dataclass
class EvalConfig:
    """How a set is scored. ``epochs=None`` means the protocol's 300 (1000 when ``augment`` is on)."""

    model: str = "convnet"
    num_models: int = 5
    epochs: int | None = None
    lr: float = 0.01
    batch_size: int = 256
    seed: int = 0
    device: str = "cpu"
    augment: bool = False

    def resolved_epochs(self) -> int:
        if self.epochs is not None:
            return self.epochs
        return 1000 if self.augment else 300


@dataclass
class EvalResult:
    """Per-model metrics and their mean ± std."""

    per_model: list[dict]
    summary: dict
    majority_rate: float
    test_size: int
    config: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        """One human line: 'acc 0.712 ± 0.020 | bal-acc … | AUC … (N models; majority 0.731)'."""
        s = self.summary
        return (f"acc {s['accuracy']['mean']:.3f} ± {s['accuracy']['std']:.3f} | "
                f"bal-acc {s['balanced_accuracy']['mean']:.3f} ± {s['balanced_accuracy']['std']:.3f} | "
                f"AUC {s['auc']['mean']:.3f} ± {s['auc']['std']:.3f} "
                f"({len(self.per_model)} models; majority rate {self.majority_rate:.3f})")


def summarize(per_model: list[dict]) -> dict:
    """mean/std (population std, as the published code reports) of each summary metric over models."""
    out = {}
    for key in SUMMARY_METRICS:
        values = np.array([m[key] for m in per_model], dtype=float)
        out[key] = {"mean": float(np.nanmean(values)), "std": float(np.nanstd(values)), "values": values.tolist()}
    return out


def evaluate_images(images: torch.Tensor, labels: torch.Tensor, test_images: torch.Tensor,
                    test_labels: torch.Tensor, num_classes: int, task: str, config: EvalConfig,
                    augment: Augment | None = None, progress: bool = True, desc: str = "evaluate") -> EvalResult:
    """Train ``config.num_models`` fresh networks on (images (N,C,H,W), labels (N,)) and score them.

    Model k is initialised and shuffled from seed ``config.seed * 1000 + k``: the same config gives
    the same numbers on the same machine. ``augment`` (e.g. DSA) is applied to every training batch.
    """
    if config.augment and augment is None:
        raise ValueError("EvalConfig.augment is on but no augmentation function was given")
    epochs = config.resolved_epochs()
    train_cfg = TrainConfig(epochs=epochs, lr=config.lr, batch_size=config.batch_size)
    y_true = test_labels.cpu().numpy()
    per_model = []
    bar = tqdm(total=config.num_models * epochs, desc=desc, unit="epoch", disable=not progress, leave=False)
    for k in range(config.num_models):
        generator = torch.Generator().manual_seed(config.seed * 1000 + k)
        model = build_model(config.model, images.shape[1], num_classes, images.shape[-1], generator=generator)
        model = model.to(config.device)
        train_network(model, images, labels, train_cfg, generator, augment if config.augment else None,
                      on_epoch=lambda _: bar.update(1))
        metrics = classification_metrics(y_true, predict_proba(model, test_images), task)
        per_model.append(metrics)
        bar.set_postfix(acc=f"{metrics['accuracy']:.3f}")
    bar.close()
    return EvalResult(per_model=per_model, summary=summarize(per_model),
                      majority_rate=majority_rate(y_true, num_classes), test_size=len(y_true),
                      config={**asdict(config), "epochs": epochs})
