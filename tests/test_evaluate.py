"""Metrics against hand-computed values, evaluator repeatability, selectors, the ImageSet round trip."""
import numpy as np
import pytest
import torch

from medistill.data import DataError, ImageSet
from medistill.evaluate import EvalConfig, balanced_accuracy, evaluate_images, majority_rate, medmnist_auc
from medistill.selection import check_ipc, herding_order, kcenter_order, select


def test_metrics_known_values():
    y = np.array([0, 0, 0, 1])
    always_zero = np.array([0, 0, 0, 0])
    assert balanced_accuracy(y, always_zero, 2) == 0.5  # looks 0.75 by accuracy
    assert majority_rate(y, 2) == 0.75
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    # binary AUC uses the last column: positives {3} score 0.6; negatives 0.1, 0.2, 0.7 → 2 of 3 pairs
    assert medmnist_auc(y, scores, "binary-class") == pytest.approx(2 / 3)
    y3 = np.array([0, 1, 2])
    assert medmnist_auc(y3, np.eye(3), "multi-class") == 1.0


def test_evaluator_repeatable_with_seed(breast):
    subset = select(breast, "random", ipc=2, seed=1)
    cfg = EvalConfig(num_models=2, epochs=3, seed=5)
    args = (subset.images, subset.labels, breast.test_images[:64], breast.test_labels[:64], 2, breast.task)
    a = evaluate_images(*args, cfg, progress=False)
    b = evaluate_images(*args, cfg, progress=False)
    assert a.per_model == b.per_model
    c = evaluate_images(*args, EvalConfig(num_models=2, epochs=3, seed=6), progress=False)
    assert c.per_model != a.per_model
    assert a.summary["accuracy"]["mean"] == pytest.approx(np.mean([m["accuracy"] for m in a.per_model]))
    assert a.majority_rate == pytest.approx(majority_rate(breast.test_labels[:64].numpy(), 2))


def test_random_selector_per_class_and_seeded(breast):
    a = select(breast, "random", ipc=3, seed=0)
    assert a.images_per_class() == [3, 3]
    assert a.metadata["source_indices"] == select(breast, "random", ipc=3, seed=0).metadata["source_indices"]
    assert a.metadata["source_indices"] != select(breast, "random", ipc=3, seed=1).metadata["source_indices"]
    idx = torch.tensor(a.metadata["source_indices"])
    assert torch.equal(a.images, breast.train_images[idx])


def test_ipc_larger_than_smallest_class(breast):
    with pytest.raises(ValueError, match="exceeds the smallest class .*147"):
        check_ipc(breast, 148)
    check_ipc(breast, 147)


def test_herding_matches_mean_and_kcenter_covers():
    features = torch.tensor([[0.0, 0.0], [10.0, 0.0], [-10.0, 0.0], [1.0, 0.0], [0.0, 9.0]])
    # class mean is (0.2, 1.8): herding first takes the point nearest it
    assert herding_order(features, 1).tolist() == [0]
    order = kcenter_order(features, 3)
    assert order[0] == 0 and set(order[1:].tolist()) == {1, 2}  # the two farthest points next


def test_full_selector_returns_all(breast):
    full = select(breast, "full")
    assert len(full.labels) == 546 and full.images_per_class() == [147, 399]


def test_imageset_round_trip_and_grid(breast, tmp_path):
    subset = select(breast, "random", ipc=4, seed=2)
    subset.metadata["learned_lr"] = 0.02
    path = subset.save(tmp_path / "set.pt")
    loaded = ImageSet.load(path)
    assert torch.equal(loaded.images, subset.images) and torch.equal(loaded.labels, subset.labels)
    assert torch.equal(loaded.mean, breast.mean) and loaded.class_names == breast.class_names
    assert loaded.learned_lr == 0.02 and loaded.metadata["dataset_md5"] == breast.md5
    assert "torch" in loaded.metadata["versions"]
    from PIL import Image

    grid = Image.open(subset.save_grid(tmp_path / "grid.png", scale=1))
    assert grid.size == (4 * 30 + 2, 2 * 30 + 2)  # 4 columns, one row per class, 2 px gaps


def test_imageset_load_errors(tmp_path):
    with pytest.raises(DataError, match="no image set"):
        ImageSet.load(tmp_path / "missing.pt")
    torch.save({"x": 1}, tmp_path / "other.pt")
    with pytest.raises(DataError, match="not a medistill image set"):
        ImageSet.load(tmp_path / "other.pt")
