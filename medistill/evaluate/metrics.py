"""Classification metrics as MedMNIST reports them, plus the ones a clinician reads first.

Accuracy alone flatters a model that always answers the majority class, so every score comes with
balanced accuracy (mean per-class recall), MedMNIST's AUC, each class's recall, the confusion
matrix and, for a binary task, sensitivity and specificity.

``accuracy`` and ``auc`` are computed as ``medmnist.Evaluator`` (``medmnist.evaluator.getACC`` /
``getAUC``) computes ACC and AUC from the same scores, so they compare with the MedMNIST leaderboard:

* binary-class: ACC = accuracy of ``score[:, -1] > 0.5``, here of the argmax: the same answer for two
  softmax probabilities (they sum to 1) but for a rounding tie at 0.5; AUC = ROC AUC of ``score[:, -1]``;
* multi-class and ordinal-regression: ACC = accuracy of the argmax; AUC = mean over the classes of the
  one-vs-rest ROC AUC of ``score[:, c]`` (medmnist fails when a class is absent from the labels; here
  such a class is left out of the mean);
* multi-label, binary-class (ChestMNIST): scores are per-finding sigmoid probabilities (N, K);
  ACC = mean over the K findings of the accuracy of ``score[:, k] > 0.5``; AUC = mean over the findings of
  the ROC AUC of ``score[:, k]`` (a finding with one label value in the test split is left out; medmnist
  fails there). Balanced accuracy is the mean over findings of (sensitivity + specificity) / 2,
  ``per_class_recall`` each finding's sensitivity, and the confusion matrix (K, 2, 2): per finding
  [[TN, FP], [FN, TP]].
"""
from __future__ import annotations

import numpy as np

MULTILABEL_TASK = "multi-label, binary-class"
THRESHOLD = 0.5  # medmnist's getACC threshold for binary and multi-label scores


def is_multilabel(task: str | None) -> bool:
    return bool(task) and "multi-label" in str(task)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float((y_true == y_pred).mean()) if len(y_true) else float("nan")


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) int64 counts: row = true class, column = predicted class."""
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def per_class_recall(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> list[float]:
    """Recall of each class (nan for a class absent from y_true)."""
    out = []
    for c in range(num_classes):
        mask = y_true == c
        out.append(float((y_pred[mask] == c).mean()) if mask.any() else float("nan"))
    return out


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Mean per-class recall over the classes present: 1/K for a model that always answers one class."""
    return float(np.nanmean(per_class_recall(y_true, y_pred, num_classes)))


def medmnist_auc(y_true: np.ndarray, y_score: np.ndarray, task: str) -> float:
    """AUC as ``medmnist.Evaluator`` computes it.

    y_score: (N, K) class probabilities. binary-class: ROC AUC of the last column; multi-label: the mean
    over labels of each column's ROC AUC against y_true (N, K); otherwise the mean of one-vs-rest AUCs
    over the classes (a class or label with a single value in y_true is left out).
    """
    from sklearn.metrics import roc_auc_score

    if is_multilabel(task):
        aucs = [roc_auc_score(y_true[:, k], y_score[:, k]) for k in range(y_score.shape[1])
                if 0 < y_true[:, k].sum() < len(y_true)]
        return float(np.mean(aucs)) if aucs else float("nan")
    if task == "binary-class":
        if len(np.unique(y_true)) < 2:
            return float("nan")
        return float(roc_auc_score(y_true, y_score[:, -1]))
    aucs = []
    for c in range(y_score.shape[1]):
        binary = (y_true == c).astype(float)
        if 0 < binary.sum() < len(binary):
            aucs.append(roc_auc_score(binary, y_score[:, c]))
    return float(np.mean(aucs)) if aucs else float("nan")


def majority_rate(y_true: np.ndarray, num_classes: int) -> float:
    """Accuracy of always predicting the most frequent class of ``y_true``; multi-label (y_true (N, K)):
    MedMNIST's multi-label accuracy of always answering each finding's more frequent value."""
    if y_true.ndim == 2:
        positive = (y_true > THRESHOLD).mean(0)
        return float(np.maximum(positive, 1 - positive).mean())
    return float(np.bincount(y_true, minlength=num_classes).max() / len(y_true))


def multilabel_metrics(y_true: np.ndarray, y_score: np.ndarray) -> dict:
    """Metrics of one network on multi-label data from labels (N, K) of 0/1 and sigmoid scores (N, K)."""
    truth = y_true > THRESHOLD
    pred = y_score > THRESHOLD
    positives, negatives = truth.sum(0), (~truth).sum(0)
    tp, fn = (pred & truth).sum(0), (~pred & truth).sum(0)
    tn, fp = (~pred & ~truth).sum(0), (pred & ~truth).sum(0)
    sensitivity = np.where(positives > 0, tp / np.maximum(positives, 1), np.nan)
    specificity = np.where(negatives > 0, tn / np.maximum(negatives, 1), np.nan)
    per_finding = (sensitivity + specificity) / 2  # nan where a finding has one label value only
    balanced = float(np.nanmean(per_finding)) if np.isfinite(per_finding).any() else float("nan")
    return {
        "accuracy": float((pred == truth).mean(0).mean()) if len(truth) else float("nan"),
        "balanced_accuracy": float(balanced),
        "auc": medmnist_auc(truth.astype(np.int64), y_score, MULTILABEL_TASK),
        "per_class_recall": [float(v) for v in sensitivity],
        "per_class_specificity": [float(v) for v in specificity],
        "confusion_matrix": np.stack([np.stack([tn, fp], 1), np.stack([fn, tp], 1)], 1).astype(np.int64).tolist(),
    }


def classification_metrics(y_true: np.ndarray, y_score: np.ndarray, task: str) -> dict:
    """Metrics of one network from labels (N,) and probabilities (N, K).

    accuracy, balanced_accuracy, auc, per_class_recall (K,), confusion_matrix (K × K, rows true);
    binary tasks also sensitivity (recall of class 1, the positive class whose probability the AUC
    ranks) and specificity (recall of class 0). The predicted class is the argmax. Multi-label tasks
    (labels (N, K)): :func:`multilabel_metrics`.
    """
    if is_multilabel(task) or y_true.ndim == 2:
        return multilabel_metrics(y_true, y_score)
    num_classes = y_score.shape[1]
    y_pred = y_score.argmax(1)
    recall = per_class_recall(y_true, y_pred, num_classes)
    out = {
        "accuracy": accuracy(y_true, y_pred),
        "balanced_accuracy": float(np.nanmean(recall)),
        "auc": medmnist_auc(y_true, y_score, task),
        "per_class_recall": recall,
        "confusion_matrix": confusion_matrix(y_true, y_pred, num_classes).tolist(),
    }
    if task == "binary-class" and num_classes == 2:
        out["sensitivity"], out["specificity"] = recall[1], recall[0]
    return out
