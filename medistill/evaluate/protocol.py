"""The evaluation protocol: train N fresh networks on an image set, score each on the test split.

Reports accuracy, balanced accuracy, AUC (MedMNIST's way), sensitivity and specificity (binary
tasks) as mean ± std over the networks, per-class recall per network, the confusion matrix summed
over the networks, and the majority-class rate of the test split (0.73 on BreastMNIST: accuracy
alone can flatter a model that learned nothing). What to evaluate a given set with (DSA or not,
its learned lr, its ZCA space) is decided in one place, :mod:`.recipe`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ..models import build_model
from ..ops import dsa, sample_dsa_params
from .metrics import classification_metrics, is_multilabel, majority_rate
from .train import TrainConfig, predict_proba, train_network

SUMMARY_METRICS = ("accuracy", "balanced_accuracy", "auc")
BINARY_METRICS = ("sensitivity", "specificity")


@dataclass
class EvalConfig:
    """How a set is scored.

    ``dsa_strategy``: None trains without augmentation; a DSA strategy string (e.g.
    ``color_crop_cutout_flip_scale_rotate``) applies unseeded DSA (mode 'S', each sample its own
    parameters) to every training batch, resampling with ``dsa_align_corners``. ``epochs=None``
    means the protocol's 300 (1000 with DSA). ``schedule``: see :class:`~.train.TrainConfig`.
    """

    model: str = "convnet"
    num_models: int = 5
    epochs: int | None = None
    lr: float = 0.01
    batch_size: int = 256
    seed: int = 0
    device: str = "cpu"
    dsa_strategy: str | None = None
    dsa_align_corners: bool = False
    schedule: str = "published"

    def __post_init__(self):
        if self.num_models < 1:
            raise ValueError(f"the number of evaluation networks must be ≥ 1, got {self.num_models}")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"evaluation epochs must be ≥ 1, got {self.epochs}")

    @property
    def uses_dsa(self) -> bool:
        return bool(self.dsa_strategy)

    def resolved_epochs(self) -> int:
        if self.epochs is not None:
            return self.epochs
        return 1000 if self.uses_dsa else 300


def dsa_training_augment(strategy: str, align_corners: bool = False):
    """Unseeded DSA for network training: (x (B, C, H, W), generator) → augmented x, one family per call,
    every sample its own parameters drawn from ``generator``."""
    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        params = sample_dsa_params(x.shape[0], x.shape[-2], x.shape[-1], strategy=strategy, mode="S",
                                   siamese=False, generator=generator, device=x.device)
        return dsa(x, params, align_corners=align_corners)
    return augment


@dataclass
class EvalResult:
    """Per-model metrics, their mean ± std, and the confusion matrix summed over the models."""

    per_model: list[dict]
    summary: dict
    majority_rate: float
    test_size: int
    config: dict = field(default_factory=dict)
    confusion_matrix: list[list[int]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        return result_line(self.summary, len(self.per_model), self.majority_rate)


def result_line(summary: dict, models: int, majority: float) -> str:
    """One human line: 'acc 0.712 ± 0.020 | bal-acc … | AUC … [| sens … | spec …] (N models; majority 0.731)'."""
    names = {"accuracy": "acc", "balanced_accuracy": "bal-acc", "auc": "AUC", "sensitivity": "sens",
             "specificity": "spec"}
    parts = [f"{names[k]} {summary[k]['mean']:.3f} ± {summary[k]['std']:.3f}" for k in names if k in summary]
    return " | ".join(parts) + f" ({models} models; majority rate {majority:.3f})"


def summarize(per_model: list[dict]) -> dict:
    """mean/std (population std, as the published code reports) of each summary metric over models."""
    out = {}
    keys = SUMMARY_METRICS + tuple(k for k in BINARY_METRICS if per_model and k in per_model[0])
    for key in keys:
        values = np.array([m[key] for m in per_model], dtype=float)
        out[key] = {"mean": float(np.nanmean(values)), "std": float(np.nanstd(values)), "values": values.tolist()}
    return out


def evaluate_images(images: torch.Tensor, labels: torch.Tensor, test_images: torch.Tensor,
                    test_labels: torch.Tensor, num_classes: int, task: str, config: EvalConfig,
                    progress: bool = True, desc: str = "evaluate") -> EvalResult:
    """Train ``config.num_models`` fresh networks on (images (N,C,H,W), labels (N,)) and score them.

    Model k is initialised, shuffled and augmented from seed ``config.seed * 1000 + k``: the same
    config gives the same numbers on the same machine. A multi-label ``task``: labels are (N, K) float
    targets, test_labels (N_test, K) multi-hot; the networks train with BCE and are scored on sigmoid
    probabilities (:mod:`.metrics`). ``test_images`` may be a lazily normalised split
    (:class:`~medistill.data.SplitImages`), scored batch by batch.
    """
    multilabel = is_multilabel(task)
    if multilabel != (labels.dim() == 2) or multilabel != (test_labels.dim() == 2):
        raise ValueError(f"task {task!r} needs {'(N, K) multi-label' if multilabel else '(N,) class'} labels; got "
                         f"{tuple(labels.shape)} and test labels {tuple(test_labels.shape)}")
    epochs = config.resolved_epochs()
    train_cfg = TrainConfig(epochs=epochs, lr=config.lr, batch_size=config.batch_size, schedule=config.schedule)
    augment = dsa_training_augment(config.dsa_strategy, config.dsa_align_corners) if config.uses_dsa else None
    y_true = test_labels.cpu().numpy()
    per_model = []
    bar = tqdm(total=config.num_models * train_cfg.epochs_run(), desc=desc, unit="epoch", disable=not progress,
               leave=False)
    for k in range(config.num_models):
        generator = torch.Generator().manual_seed(config.seed * 1000 + k)
        model = build_model(config.model, images.shape[1], num_classes, images.shape[-1], generator=generator)
        model = model.to(config.device)
        train_network(model, images, labels, train_cfg, generator, augment, on_epoch=lambda _: bar.update(1))
        metrics = classification_metrics(y_true, predict_proba(model, test_images, multilabel=multilabel), task)
        per_model.append(metrics)
        bar.set_postfix(acc=f"{metrics['accuracy']:.3f}")
    bar.close()
    confusion = np.sum([m["confusion_matrix"] for m in per_model], axis=0).astype(int).tolist()
    return EvalResult(per_model=per_model, summary=summarize(per_model),
                      majority_rate=majority_rate(y_true, num_classes), test_size=len(y_true),
                      config={**asdict(config), "epochs": epochs}, confusion_matrix=confusion)
