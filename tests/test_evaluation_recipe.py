"""The one evaluation recipe, the published schedule, the medical metrics and the random-subset baseline."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import balanced_accuracy_score, confusion_matrix as sk_confusion_matrix
from torch import nn

from medistill.data import ImageSet
from medistill.evaluate import (EvalConfig, TrainConfig, classification_metrics, compare_with_random, evaluate_images,
                                evaluate_set, recipe_config, train_network)
from medistill.ops.dsa_params import DEFAULT_STRATEGY
from medistill.selection import random_baseline, select


def _tiny_problem(seed=0, n=10):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 4, 4, generator=g)
    y = torch.arange(n) % 2
    return x, y


def _published_loop(model, x, y, epochs, lr, generator, batch=4):
    """The published evaluate_synset schedule written out: E + 1 epochs; after epoch E//2 + 1 the lr is cut
    ×0.1 and a new optimiser (fresh momentum) is made."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    for ep in range(epochs + 1):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), batch):
            idx = order[start:start + batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if ep == epochs // 2 + 1:
            lr *= 0.1
            opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    return model


@pytest.mark.parametrize("epochs", [1, 4, 7])
def test_published_schedule_is_the_published_loop(epochs):
    x, y = _tiny_problem()
    torch.manual_seed(0)
    template = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    ours, ref = [nn.Sequential(nn.Flatten(), nn.Linear(16, 2)) for _ in range(2)]
    ours.load_state_dict(template.state_dict())
    ref.load_state_dict(template.state_dict())
    seen = []
    train_network(ours, x, y, TrainConfig(epochs=epochs, lr=0.1, batch_size=4), torch.Generator().manual_seed(3),
                  on_epoch=seen.append)
    _published_loop(ref, x, y, epochs, 0.1, torch.Generator().manual_seed(3))
    assert seen == list(range(epochs + 1))  # E + 1 passes
    for a, b in zip(ours.parameters(), ref.parameters()):
        assert torch.equal(a, b)
    # the older schedule is a named option and differs
    half = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    half.load_state_dict(template.state_dict())
    train_network(half, x, y, TrainConfig(epochs=epochs, lr=0.1, batch_size=4, schedule="half"),
                  torch.Generator().manual_seed(3))
    assert not torch.equal(half[1].weight, ours[1].weight)
    with pytest.raises(ValueError, match="unknown training schedule"):
        TrainConfig(schedule="cosine")


def test_medical_metrics_against_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    scores = rng.random((200, 2))
    m = classification_metrics(y, scores, "binary-class")
    pred = scores.argmax(1)
    assert np.array_equal(np.array(m["confusion_matrix"]), sk_confusion_matrix(y, pred, labels=[0, 1]))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    tn, fp, fn, tp = sk_confusion_matrix(y, pred).ravel()
    assert m["sensitivity"] == pytest.approx(tp / (tp + fn))
    assert m["specificity"] == pytest.approx(tn / (tn + fp))
    y5 = rng.integers(0, 5, 300)
    m5 = classification_metrics(y5, rng.random((300, 5)), "multi-class")
    assert "sensitivity" not in m5 and len(m5["per_class_recall"]) == 5
    assert np.array(m5["confusion_matrix"]).sum() == 300


def test_confusion_matrix_summed_over_networks(breast):
    subset = select(breast, "random", ipc=2, seed=0)
    result = evaluate_images(subset.images, subset.labels, breast.test_images[:50], breast.test_labels[:50], 2,
                             breast.task, EvalConfig(num_models=2, epochs=1), progress=False)
    total = np.array(result.confusion_matrix)
    assert total.sum() == 2 * 50
    assert np.array_equal(total, np.sum([m["confusion_matrix"] for m in result.per_model], axis=0))
    assert "sensitivity" in result.summary and "specificity" in result.summary


def _set(metadata, learned_lr=None):
    images = torch.zeros(2, 1, 28, 28)
    return ImageSet(images=images, labels=torch.tensor([0, 1]), mean=torch.zeros(1), std=torch.ones(1),
                    class_names=["a", "b"], metadata={**metadata, "learned_lr": learned_lr})


def test_recipe_decides_from_the_set():
    base = EvalConfig(num_models=1)
    dm = {"method": "dm", "evaluate_with_dsa": True,
          "hyperparameters": {"dsa_strategy": "crop_flip", "align_corners": False}}
    cfg = recipe_config(dm, None, base)
    assert cfg.dsa_strategy == "crop_flip" and cfg.resolved_epochs() == 1000 and not cfg.dsa_align_corners
    mtt = {"method": "mtt", "evaluate_with_dsa": True, "hyperparameters": {"dsa_strategy": DEFAULT_STRATEGY,
                                                                           "align_corners": True}}
    cfg = recipe_config(mtt, 0.03, base)
    assert cfg.dsa_align_corners and cfg.lr == 0.03
    dc = {"method": "dc", "evaluate_with_dsa": False, "hyperparameters": {"dsa_strategy": DEFAULT_STRATEGY}}
    assert recipe_config(dc, None, base).dsa_strategy is None and recipe_config(dc, None, base).resolved_epochs() == 300
    assert recipe_config(dc, None, base, dsa=True).dsa_strategy == DEFAULT_STRATEGY
    assert recipe_config(dm, None, base, dsa=False).dsa_strategy is None
    assert recipe_config({"method": "random"}, None, base).dsa_strategy is None  # real images: no DSA


def test_evaluate_set_uses_dsa_for_a_dm_set(breast):
    subset = select(breast, "random", ipc=2, seed=0)
    dm_like = ImageSet(images=subset.images, labels=subset.labels, mean=subset.mean, std=subset.std,
                       class_names=subset.class_names, metadata={"method": "dm", "evaluate_with_dsa": True,
                                                                 "hyperparameters": {"dsa_strategy": DEFAULT_STRATEGY}})
    cfg = EvalConfig(num_models=1, epochs=2)
    with_recipe = evaluate_set(dm_like, breast, cfg, progress=False)
    assert with_recipe.config["dsa_strategy"] == DEFAULT_STRATEGY
    args = (subset.images, subset.labels, breast.test_images, breast.test_labels, 2, breast.task)
    direct = evaluate_images(*args, EvalConfig(num_models=1, epochs=2, dsa_strategy=DEFAULT_STRATEGY), progress=False)
    plain = evaluate_images(*args, cfg, progress=False)
    assert with_recipe.per_model == direct.per_model and with_recipe.per_model != plain.per_model


def _fake_baseline(values):
    return {"subsets": {m: {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values}
                        for m in ("balanced_accuracy", "auc")}}


def test_beats_random_needs_more_than_the_spread():
    summary = {"balanced_accuracy": {"mean": 0.70}, "auc": {"mean": 0.80}}
    tight = compare_with_random(summary, _fake_baseline([0.60, 0.62, 0.64]))
    assert tight["overall"] == "beats random" and tight["auc"]["verdict"] == "beats random"
    wide = compare_with_random(summary, _fake_baseline([0.45, 0.80, 0.62]))  # 0.623 + 0.143 > 0.70
    assert wide["balanced_accuracy"]["verdict"] == "does not beat random" and wide["overall"] == "does not beat random"
    single = compare_with_random(summary, _fake_baseline([0.5]))
    assert single["overall"].startswith("undecided")
    assert "spread" in tight["rule"]


def test_random_baseline_subsets_spread_and_one_cache(breast, tmp_path, monkeypatch):
    cfg = EvalConfig(num_models=2, epochs=1)
    small = breast
    three = random_baseline(small, 1, cfg, subsets=3, cache_dir=tmp_path, progress=False)
    assert three["num_subsets"] == 3 and len(three["per_subset"]) == 3
    values = three["subsets"]["accuracy"]["values"]
    assert len(values) == 3 and three["subsets"]["accuracy"]["std"] == pytest.approx(np.std(values))
    assert len(three["summary"]["accuracy"]["values"]) == 6  # pooled over every network of every subset
    assert [r["subset_seed"] for r in three["per_subset"]] == [0, 1, 2]
    assert len({tuple(r["source_indices"]) for r in three["per_subset"]}) == 3  # three different subsets
    assert len(list(tmp_path.glob("random-breastmnist-ipc1-*.json"))) == 3
    # R = 5 reuses the three cached subsets and scores only two more
    import medistill.selection.random_scores as rb

    scored = []
    real = rb.score_subset
    monkeypatch.setattr(rb, "score_subset", lambda *a, **k: scored.append(a[2]) or real(*a, **k))
    five = random_baseline(small, 1, cfg, subsets=5, cache_dir=tmp_path, progress=False)
    assert scored == [3, 4]
    assert five["per_subset"][:3] == json.loads(json.dumps(three["per_subset"]))
