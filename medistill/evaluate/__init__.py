"""Training and scoring networks on an image set: the evaluation protocol and its metrics."""
from .metrics import balanced_accuracy, classification_metrics, majority_rate, medmnist_auc
from .protocol import EvalConfig, EvalResult, evaluate_images, summarize
from .train import TrainConfig, predict_proba, train_network

__all__ = [
    "EvalConfig",
    "EvalResult",
    "TrainConfig",
    "balanced_accuracy",
    "classification_metrics",
    "evaluate_images",
    "majority_rate",
    "medmnist_auc",
    "predict_proba",
    "summarize",
    "train_network",
]
