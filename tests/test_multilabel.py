"""ChestMNIST (multi-label, 14 findings) on a generated file in MedMNIST's layout: labels and groups, BCE
training, MedMNIST's multi-label ACC/AUC, baselines, evaluation and each method (DM, DC, DSA distil;
MTT refuses), and every task's scores checked against ``medmnist.Evaluator`` on the same predictions."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmarks.medmnist_layout import write_medmnist_layout
from medistill.cli import main
from medistill.data import NO_FINDING, ImageSet, load_medmnist
from medistill.evaluate import EvalConfig, classification_metrics, evaluate_set, majority_rate, predict_proba
from medistill.evaluate.train import training_loss
from medistill.methods import distill, make_config
from medistill.models import build_model
from medistill.selection import random_baseline, select

FINDINGS = 14


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chest")
    write_medmnist_layout(folder, "chestmnist", 28, (150, 30, 90))
    return folder


@pytest.fixture(scope="module")
def chest(root):
    return load_medmnist("chestmnist", root=root, verify_md5=False)


def test_chestmnist_loads_with_multi_hot_labels_and_groups(root, chest):
    raw = np.load(root / "chestmnist.npz")["train_labels"]
    assert chest.task == "multi-label, binary-class" and chest.multilabel
    assert chest.num_classes == FINDINGS and chest.class_names[0] == "atelectasis" and chest.class_names[-1] == "hernia"
    assert chest.train_labels.shape == (150, FINDINGS) and chest.train_labels.dtype == torch.float32
    assert torch.equal(chest.train_labels, torch.from_numpy(raw.astype(np.float32)))
    assert chest.group_names == chest.class_names + [NO_FINDING] and chest.num_groups == FINDINGS + 1
    groups = chest.group_indices("train")
    for k in range(FINDINGS):  # a finding's group: every image showing it, whatever else it shows
        assert torch.equal(groups[k], torch.from_numpy(np.flatnonzero(raw[:, k] == 1)))
    assert torch.equal(groups[-1], torch.from_numpy(np.flatnonzero(raw.sum(1) == 0)))
    assert chest.class_counts() == raw.sum(0).tolist()
    targets = chest.group_targets()
    assert targets.shape == (FINDINGS + 1, FINDINGS)
    assert torch.equal(targets.diagonal(), torch.ones(FINDINGS)) and torch.equal(targets[-1], torch.zeros(FINDINGS))
    assert torch.allclose(targets[2], torch.from_numpy(raw[raw[:, 2] == 1].mean(0)).float())


def test_bad_multilabel_labels_are_refused(tmp_path):
    from medistill.data import DataError

    path = write_medmnist_layout(tmp_path, "chestmnist", 28, (20, 5, 5))
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["val_labels"] = arrays["val_labels"][:, :1]
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=r"must be \(N, 14\) for multi-label"):
        load_medmnist("chestmnist", root=tmp_path, verify_md5=False)
    arrays["val_labels"] = np.full((5, FINDINGS), 2, np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(DataError, match="must be 0 or 1"):
        load_medmnist("chestmnist", root=tmp_path, verify_md5=False)


def test_multilabel_training_loss_is_bce_with_logits():
    logits, targets = torch.randn(6, FINDINGS), (torch.rand(6, FINDINGS) > 0.7).float()
    assert torch.equal(training_loss(logits, targets), F.binary_cross_entropy_with_logits(logits, targets))
    classes = torch.tensor([0, 3, 1, 2, 2, 0])
    assert torch.equal(training_loss(logits, classes), F.cross_entropy(logits, classes))


def test_multilabel_metrics():
    y_true = np.array([[1, 0], [0, 0], [1, 1], [0, 1]])
    y_score = np.array([[0.9, 0.2], [0.6, 0.1], [0.4, 0.8], [0.1, 0.3]])
    m = classification_metrics(y_true, y_score, "multi-label, binary-class")
    # finding 0: predictions 1, 1, 0, 0 vs 1, 0, 1, 0 → 2/4 right; finding 1: 0, 0, 1, 0 vs 0, 0, 1, 1 → 3/4
    assert m["accuracy"] == pytest.approx((0.5 + 0.75) / 2)
    assert m["per_class_recall"] == [0.5, 0.5] and m["per_class_specificity"] == [0.5, 1.0]
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 0.75) / 2)
    assert m["confusion_matrix"] == [[[1, 1], [1, 1]], [[2, 0], [1, 1]]]  # per finding [[TN, FP], [FN, TP]]
    assert majority_rate(y_true, 2) == pytest.approx((0.5 + 0.5) / 2)
    assert majority_rate(np.array([[1, 0], [1, 0], [0, 0], [1, 1]]), 2) == pytest.approx((0.75 + 0.75) / 2)


def _scores(rng, n, k, multilabel):
    logits = rng.normal(0, 2, size=(n, k))
    if multilabel:
        return 1 / (1 + np.exp(-logits))
    e = np.exp(logits)
    return e / e.sum(1, keepdims=True)


@pytest.mark.parametrize("flag", ["breastmnist", "retinamnist", "pathmnist", "chestmnist"])
def test_scores_match_medmnist_evaluator(flag, data_root, tmp_path):
    """accuracy and auc equal medmnist.Evaluator's ACC and AUC on the same predictions: binary-class
    (BreastMNIST, real file), ordinal-regression (RetinaMNIST, real file), multi-class and multi-label
    (generated PathMNIST and ChestMNIST files); random scores, and those of networks medistill trains."""
    from medmnist import INFO, Evaluator

    folder = data_root
    if flag in ("pathmnist", "chestmnist"):
        folder = tmp_path
        write_medmnist_layout(folder, flag, 28, (45, 9, 60) if flag == "pathmnist" else (60, 10, 60))
    dataset = load_medmnist(flag, root=folder, verify_md5=False)
    evaluator = Evaluator(flag, "test", root=str(folder))
    task, multilabel = INFO[flag]["task"], dataset.multilabel
    y_true = dataset.test_labels.numpy()
    rng = np.random.default_rng(0)
    predictions = [_scores(rng, len(y_true), dataset.num_classes, multilabel) for _ in range(3)]
    torch.set_num_threads(1)
    for seed in range(2):  # a trained network's scores, as the evaluation protocol computes them
        net = build_model("convnet", dataset.channels, dataset.num_classes, 28, generator=torch.Generator().manual_seed(seed))
        from medistill.evaluate import TrainConfig, train_network

        subset = select(dataset, "random", 2, seed=seed)
        train_network(net, subset.images, subset.labels, TrainConfig(epochs=2), torch.Generator().manual_seed(seed))
        predictions.append(predict_proba(net, dataset.images("test"), multilabel=multilabel))
    for y_score in predictions:
        ours = classification_metrics(y_true, y_score, task)
        theirs = evaluator.evaluate(y_score)
        assert ours["accuracy"] == pytest.approx(theirs.ACC, abs=1e-12)
        assert ours["auc"] == pytest.approx(theirs.AUC, abs=1e-12)


def test_baselines_and_evaluation(chest, tmp_path):
    torch.set_num_threads(1)
    subset = select(chest, "random", 3, seed=0)
    assert subset.multilabel and subset.labels.shape == (3 * (FINDINGS + 1), FINDINGS)
    assert subset.images_per_class() == [3] * (FINDINGS + 1)
    idx = torch.tensor(subset.metadata["source_indices"])
    assert torch.equal(subset.labels, chest.train_labels[idx])  # real images keep their real findings
    for g in range(FINDINGS):  # drawn for finding g: each of them shows it
        assert bool((subset.labels[subset.groups == g, g] == 1).all())
    assert bool((subset.labels[subset.groups == FINDINGS] == 0).all())
    subset.save(tmp_path / "subset.pt")
    loaded = ImageSet.load(tmp_path / "subset.pt")
    assert torch.equal(loaded.groups, subset.groups) and torch.equal(loaded.labels, subset.labels)
    loaded.save_grid(tmp_path / "grid.png")
    config = EvalConfig(num_models=2, epochs=2)
    result = evaluate_set(loaded, chest, config, progress=False)
    assert result.test_size == 90 and len(result.per_model) == 2
    assert 0 <= result.summary["accuracy"]["mean"] <= 1 and 0 <= result.summary["auc"]["mean"] <= 1
    assert np.array(result.confusion_matrix).shape == (FINDINGS, 2, 2)
    assert result.majority_rate == pytest.approx(majority_rate(chest.test_labels.numpy(), FINDINGS))
    baseline = random_baseline(chest, 2, EvalConfig(num_models=1, epochs=1), subsets=2, progress=False)
    assert baseline["num_subsets"] == 2 and len(baseline["per_subset"][0]["source_indices"]) == 2 * (FINDINGS + 1)
    full = select(chest, "full")
    assert len(full.labels) == 150 and torch.equal(full.labels, chest.train_labels)
    assert sum(full.images_per_class()) == 150


@pytest.mark.parametrize("method", ["dm", "dc", "dsa"])
def test_methods_distil_one_group_per_finding_plus_no_finding(chest, method, tmp_path):
    torch.set_num_threads(1)
    overrides = {"iterations": 2, "batch_real": 8}
    if method != "dm":
        overrides["inner_loop"] = 1
    config = make_config(method, 2, "quick", **overrides)
    result = distill(chest, method, config, tmp_path / method, progress=False,
                     eval_config=EvalConfig(num_models=1, epochs=1), random_subsets=1)
    synthetic = ImageSet.load(tmp_path / method)
    assert synthetic.images.shape == (2 * (FINDINGS + 1), 1, 28, 28) and torch.isfinite(synthetic.images).all()
    assert torch.equal(synthetic.groups, torch.arange(FINDINGS + 1).repeat_interleave(2))
    assert torch.equal(synthetic.labels, chest.group_targets().repeat_interleave(2, dim=0))
    assert synthetic.metadata["groups"][-1] == NO_FINDING and synthetic.metadata["task"] == chest.task
    assert result.metrics["distilled"]["test_size"] == 90
    assert set(result.metrics["comparison"]) >= {"balanced_accuracy", "auc"}


def test_mtt_and_its_experts_refuse_multilabel(chest, tmp_path):
    from medistill.methods import ExpertConfig, build_experts, make_method

    with pytest.raises(ValueError, match="MTT does not distil multi-label"):
        make_method("mtt", chest, make_config("mtt", 1, "quick", expert_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="multi-label"):
        build_experts(chest, ExpertConfig(num_experts=1, epochs=1), tmp_path / "bank")
    with pytest.raises(ValueError, match="vmap"):
        make_method("dc", chest, make_config("dc", 1, "quick", class_batching="vmap"))


def test_cli_runs_chestmnist(root, tmp_path, capsys):
    common = ["--dataset", "chestmnist", "--data-root", str(root), "--allow-md5-mismatch", "--threads", "1"]
    saved, report = tmp_path / "set.pt", tmp_path / "b.json"
    assert main(["baseline", *common, "--ipc", "2", "--subsets", "2", "--models", "1", "--epochs", "1",
                 "--save", str(saved), "--json", str(report)]) == 0
    assert json.loads(report.read_text())["images"] == 2 * (FINDINGS + 1)
    assert main(["evaluate", str(saved), "--data-root", str(root), "--allow-md5-mismatch", "--models", "1",
                 "--epochs", "1", "--threads", "1"]) == 0
    assert main(["distill", *common, "--method", "dm", "--ipc", "1", "--preset", "quick", "--iterations", "1",
                 "--eval-models", "1", "--eval-epochs", "1", "--random-subsets", "1", "--out", str(tmp_path / "run")]) == 0
    # the export keeps the targets: ChestMNIST's multi-hot train_labels, the exact soft targets and groups
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "pkg")]) == 0
    from medistill.export import load_package

    package = load_package(tmp_path / "pkg")
    run_set = ImageSet.load(tmp_path / "run")
    assert package.arrays["train_labels"].shape == (FINDINGS + 1, FINDINGS)
    assert np.array_equal(package.arrays["train_labels"], (run_set.labels.numpy() >= 0.5).astype(np.uint8))
    assert torch.equal(package.image_set.labels, run_set.labels) and torch.equal(package.image_set.groups, run_set.groups)
    assert main(["evaluate", str(tmp_path / "pkg"), "--data-root", str(root), "--allow-md5-mismatch", "--models", "1",
                 "--epochs", "1", "--threads", "1"]) == 0
    capsys.readouterr()
    assert main(["distill", *common, "--method", "mtt", "--ipc", "1", "--preset", "quick",
                 "--experts", str(tmp_path / "bank"), "--out", str(tmp_path / "mtt")]) == 2
    assert "MTT does not distil multi-label data" in capsys.readouterr().err
    assert main(["info", "--data-root", str(root)]) == 0
    assert "chestmnist       found" in capsys.readouterr().out
