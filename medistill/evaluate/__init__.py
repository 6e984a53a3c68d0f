"""Training and scoring networks on an image set: the evaluation protocol, its one recipe and its metrics."""
from .comparison import compare_with_random
from .metrics import balanced_accuracy, classification_metrics, confusion_matrix, majority_rate, medmnist_auc
from .protocol import EvalConfig, EvalResult, dsa_training_augment, evaluate_images, result_line, summarize
from .recipe import check_set_matches, evaluate_set, recipe_config
from .train import TrainConfig, predict_proba, train_network

__all__ = [
    "EvalConfig",
    "EvalResult",
    "TrainConfig",
    "balanced_accuracy",
    "check_set_matches",
    "classification_metrics",
    "compare_with_random",
    "confusion_matrix",
    "dsa_training_augment",
    "evaluate_images",
    "evaluate_set",
    "majority_rate",
    "medmnist_auc",
    "predict_proba",
    "recipe_config",
    "result_line",
    "summarize",
    "train_network",
]
