"""Classification metrics as MedMNIST reports them, plus the ones a clinician reads first.

Accuracy alone flatters a model that always answers the majority class, so every score comes with
balanced accuracy (mean per-class recall), MedMNIST's AUC, each class's recall, the confusion
matrix and, for a binary task, sensitivity and specificity.
"""
from __future__ import annotations

import numpy as np


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

    y_score: (N, K) class probabilities. binary-class: ROC AUC of the last column; otherwise the
    mean of one-vs-rest AUCs over the classes (a class absent from y_true is left out).
    """
    from sklearn.metrics import roc_auc_score

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
    """Accuracy of always predicting the most frequent class of ``y_true``."""
    return float(np.bincount(y_true, minlength=num_classes).max() / len(y_true))


def classification_metrics(y_true: np.ndarray, y_score: np.ndarray, task: str) -> dict:
    """Metrics of one network from labels (N,) and probabilities (N, K).

    accuracy, balanced_accuracy, auc, per_class_recall (K,), confusion_matrix (K × K, rows true);
    binary tasks also sensitivity (recall of class 1, the positive class whose probability the AUC
    ranks) and specificity (recall of class 0).
    """
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
