"""The predictor on constructed data: intervals (clipping, coverage), grouping by source, leave-one-source-out,
the validated / not-validated rule, predictions and advice; predict and report on a tiny constructed table."""
import json
import subprocess
import sys

import numpy as np
import pytest

from medistill.cli import main
from medistill.predictor import (Coverage, clip, clip_interval, coverage, fit_grouped, fit_table, grouped_correlation,
                                 leave_one_source_out, points_from_rows, predict_all, recommend, variance_components)
from medistill.predictor.fit import HeldOut, Loso, MethodFit, row_source
from medistill.predictor.predict import predict_method
from medistill.study.table import ResultsTable


def row(task, source, method, ipc, x, y, seed=0, preset="t", spread=0.02, models=1, epochs=2, subsets=5):
    r = {"cell_id": f"{task}-{method}-ipc{ipc}-{preset}-s{seed}", "dataset": task, "source": source, "classes": 2,
         "method": method, "kind": "distilled", "ipc": ipc, "seed": seed, "preset": preset, "eval_models": models,
         "eval_epochs": epochs, "eval_augment": False, "random_subsets": subsets}
    for m in ("accuracy", "balanced_accuracy", "auc"):
        r.update({f"{m}_mean": y, f"{m}_std": 0.0, f"random_{m}_mean": x, f"random_{m}_std": 0.0,
                  f"random_{m}_spread": spread})
    return r


def study_rows(method="dm", ipc=10, sources=("a", "b", "c", "d"), tasks=4, slope=0.9, intercept=0.1, noise=0.02,
               offset=0.04, seeds=(0, 1, 2), seed=0, relation=True):
    """Tasks of several sources: y = intercept + slope·x + source offset + noise (or y unrelated to x)."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, s in enumerate(sources):
        u = offset * (k - (len(sources) - 1) / 2)
        for t in range(tasks):
            x = rng.uniform(0.3, 0.9)
            base = intercept + slope * x if relation else rng.uniform(0.3, 0.9)
            for sd in seeds:
                rows.append(row(f"{s}:t{t}", s, method, ipc, x, float(base + u + rng.normal(0, noise)), seed=sd))
    return rows


# intervals ---------------------------------------------------------------------------------------------------


def test_clipping_keeps_predictions_and_intervals_in_the_metric_range():
    assert clip(1.3) == 1.0 and clip(-0.2) == 0.0 and clip(0.4) == 0.4 and clip(None) is None
    assert clip_interval((-0.1, 0.5)) == (0.0, 0.5) and clip_interval((0.8, 1.7)) == (0.8, 1.0)
    assert clip_interval(None) is None
    # a fit far outside its data predicts beyond [0, 1]: prediction and interval come back clipped
    rows = study_rows(slope=1.6, intercept=-0.3)
    (fit,) = fit_table(rows, "accuracy")
    p = predict_method(fit, "dm", 10, "accuracy", indicator=0.98, spread=0.01)
    assert p.predicted == 1.0 and 0 <= p.interval[0] <= p.interval[1] == 1.0
    assert p.gain == pytest.approx(1.0 - 0.98) and p.gain_interval[1] == pytest.approx(1.0 - 0.98)
    assert "outside the fitted range" in p.note
    low = predict_method(fit, "dm", 10, "accuracy", indicator=0.01)
    assert low.predicted == 0.0 and low.interval[0] == 0.0


def test_coverage_counts_hits_and_flags_intervals_credibly_too_narrow():
    c = coverage([0.5, 0.6, 0.9, 0.2], [(0.4, 0.6), (0.5, 0.55), (0.8, 1.0), None])
    assert (c.hits, c.n) == (2, 3) and c.rate == pytest.approx(2 / 3)  # no interval: not counted
    assert Coverage(9, 10).too_narrow is False  # 90% of 10
    assert Coverage(5, 12).too_narrow is True and Coverage(5, 12).p_below < 0.01
    assert Coverage(0, 0).rate is None and not Coverage(0, 0).too_narrow


def test_variance_components_find_the_source_effect():
    rng = np.random.default_rng(3)
    groups = [g for g in "abcdef" for _ in range(5)]
    effect = {g: rng.normal(0, 0.1) for g in "abcdef"}
    r = np.array([effect[g] + rng.normal(0, 0.02) for g in groups])
    comp = variance_components(r - r.mean(), groups)
    assert comp["sigma_b2"] > 10 * comp["sigma_w2"]
    assert 3 <= comp["df"] <= 6  # about G − 1 when the sources dominate
    assert comp["variance"] == pytest.approx(comp["sigma_b2"] + comp["sigma_w2"], rel=0.2)
    one = variance_components(r, ["a"] * len(r))
    assert not one["between_estimable"] and "one source" in one["note"] and one["df"] == len(r) - 2
    singles = variance_components(r[:6], list("abcdef"))
    assert "not separable" in singles["note"]


def test_interval_for_a_new_source_covers_at_about_the_nominal_rate():
    """Simulate the model (source effect + task noise): a new task of a new source falls in the 90% interval
    at close to 90%; the naive interval that ignores sources covers far less."""
    from scipy import stats

    rng = np.random.default_rng(0)
    hits = naive_hits = trials = 0
    for _ in range(400):
        groups = [g for g in range(5) for _ in range(4)]
        u = rng.normal(0, 0.08, 6)
        x = rng.uniform(0.3, 0.9, len(groups))
        y = 0.1 + 0.8 * x + u[groups] + rng.normal(0, 0.02, len(groups))
        line = fit_grouped(x, y, groups)
        x0 = rng.uniform(0.3, 0.9)
        y0 = 0.1 + 0.8 * x0 + u[5] + rng.normal(0, 0.02)
        lo, hi = line.interval(x0)
        hits += lo <= y0 <= hi
        res = y - (line.intercept + line.slope * x)
        s = np.sqrt((res ** 2).sum() / (len(x) - 2))
        half = stats.t.ppf(0.95, len(x) - 2) * s * np.sqrt(1 + 1 / len(x))
        naive_hits += abs(y0 - line.predict(x0)) <= half
        trials += 1
    assert 0.84 <= hits / trials <= 0.98
    assert naive_hits / trials < hits / trials - 0.05


def test_correlation_ci_resamples_sources():
    rows = study_rows()
    points = points_from_rows(rows, "accuracy")
    c = grouped_correlation([p.x for p in points], [p.y for p in points], [p.source for p in points])
    assert c.pearson > 0.9 and c.excludes_zero and c.pearson_ci[0] <= c.pearson <= c.pearson_ci[1]
    one = grouped_correlation([p.x for p in points], [p.y for p in points], ["a"] * len(points))
    assert one.pearson is not None and one.pearson_ci is None and "one source" in one.note
    assert grouped_correlation([0.5] * 5, [0.1, 0.2, 0.3, 0.4, 0.5], list("abcde")).pearson is None


# points, grouping, leave-one-source-out -----------------------------------------------------------------------


def test_points_average_seeds_share_the_indicator_and_skip_random_full_and_other_presets():
    rows = study_rows(tasks=1, sources=("a",))
    rows += [row("a:t0", "a", "random", 10, 0.5, 0.5), row("a:t0", "a", "full", None, 0.5, 0.9),
             row("a:t0", "a", "dc", 10, 0.5, 0.7, preset="other")]
    (p,) = points_from_rows(rows, "accuracy")
    assert p.method == "dm" and len(p.seeds) == 3 and p.y == pytest.approx(np.mean(p.seeds))
    assert p.x_spread == pytest.approx(0.02)
    assert len(points_from_rows(rows, "accuracy", preset="other")) == 1
    with pytest.raises(ValueError, match="unknown metric"):
        points_from_rows(rows, "f1")


def test_row_source_from_column_or_task_name():
    assert row_source({"dataset": "brain:glioma_v_notumor", "source": "brain"}) == "brain"
    assert row_source({"dataset": "retinamnist:0v4"}) == "retinamnist"
    assert row_source({"dataset": "simulation:retinamnist_v_brain"}) == "brain+retinamnist"


def test_leave_one_source_out_holds_out_every_task_of_a_source():
    rows = study_rows(sources=("a", "b", "c"), tasks=3)
    rows += [row("simulation:a_v_b_v_c", "a+b+c", "dm", 10, 0.9, 0.99)]
    points = points_from_rows(rows, "accuracy")
    loso = leave_one_source_out(points)
    for source in "abc":
        fold = loso.folds[source]
        assert fold["held"] == 3 and fold["train_tasks"] == 6  # the two other sources, never the composite task
        assert source not in fold["train_sources"] and "a+b+c" not in fold["train_sources"]
    assert "skipped" in loso.folds["a+b+c"]  # built from every source: no fit is free of it
    assert len(loso.evaluated) == 9 and {h.source for h in loso.evaluated} == {"a", "b", "c"}
    # the mean-only predictor of a fold is the mean of the other sources' tasks
    held_a = [h for h in loso.evaluated if h.source == "a"]
    others = [p.y for p in points if p.source in ("b", "c")]
    assert held_a[0].mean_only == pytest.approx(np.mean(others))
    assert loso.mae < loso.mae_mean_only and loso.coverage.n == 9


def test_a_task_built_from_several_sources_is_shown_but_in_no_fit():
    """Three sources with no relation inside any of them, plus one easy composite task far to the right: counted
    as a fourth cluster it would make the correlation look strong; it must not enter the line or the CI."""
    rows = study_rows(sources=("a", "b", "c"), tasks=4, relation=False, seed=5)
    lever = [row("simulation:a_v_b_v_c", "a+b+c", "dm", 10, 0.98, 0.99, seed=s) for s in (0, 1, 2)]
    (with_lever,) = fit_table(rows + lever, "accuracy")
    (without,) = fit_table(rows, "accuracy")
    assert with_lever.tasks == without.tasks == 12 and with_lever.sources == ["a", "b", "c"]
    assert [p.task for p in with_lever.shown_only] == ["simulation:a_v_b_v_c"]
    assert with_lever.correlation.pearson == pytest.approx(without.correlation.pearson)
    assert with_lever.line.slope == pytest.approx(without.line.slope)
    assert not with_lever.validated
    p = predict_method(with_lever, "dm", 10, "accuracy", 0.5)
    assert p.tasks == 12 and "a+b+c" not in p.sources


# the validated rule ---------------------------------------------------------------------------------------------


def test_strong_relation_over_four_sources_is_validated():
    (fit,) = fit_table(study_rows(), "accuracy")
    assert fit.validated, fit.reasons
    assert fit.tasks == 16 and fit.sources == ["a", "b", "c", "d"]
    assert fit.loso.mae < fit.loso.mae_mean_only and fit.correlation.excludes_zero


def test_two_sources_are_not_validated_and_say_why():
    (fit,) = fit_table(study_rows(sources=("a", "b"), tasks=6), "accuracy")
    assert not fit.validated
    assert any("2 source(s) (< 3)" in r for r in fit.reasons)


def test_an_indicator_from_fewer_than_five_subsets_is_not_validated():
    rows = study_rows()
    rows[0]["random_subsets"] = 3
    (fit,) = fit_table(rows, "accuracy")
    assert not fit.validated and any("fewer than 5 random subsets" in r for r in fit.reasons)


def test_no_relation_is_not_validated_because_the_ci_includes_zero():
    (fit,) = fit_table(study_rows(relation=False, offset=0.0, noise=0.01), "accuracy")
    assert not fit.validated
    assert any("includes 0" in r for r in fit.reasons) or any("does not beat" in r for r in fit.reasons)


def test_rule_flags_narrow_intervals_and_mae_that_does_not_beat_the_mean():
    (good,) = fit_table(study_rows(), "accuracy")
    narrow = Loso(held=[HeldOut(f"t{i}", "abcd"[i % 4], 0.5, 0.5 + (i % 2) * 0.2, 0.55, (0.54, 0.56), 0.6)
                        for i in range(12)], folds=good.loso.folds)
    fit = MethodFit("dm", 10, "accuracy", "t", good.points, good.line, good.correlation, narrow)
    assert not fit.validated
    assert any("credibly below the nominal 90%" in r for r in fit.reasons)
    assert any("does not beat ignoring the indicator" in r for r in fit.reasons)  # |0.55-y| vs |0.6-y|: equal
    partly = Loso(held=[HeldOut(h.task, h.source, h.x, h.y, h.predicted, None if i % 2 else h.interval, h.mean_only)
                        for i, h in enumerate(good.loso.held)], folds=good.loso.folds)
    fit = MethodFit("dm", 10, "accuracy", "t", good.points, good.line, good.correlation, partly)
    assert fit.reasons == [f"held-out intervals for only 8 of 16 held-out tasks (a fold's training tasks were too few "
                           "for one), so coverage is not measured on the rest"]
    unmeasured = MethodFit("dm", 10, "accuracy", "t", good.points, good.line, good.correlation, Loso())
    assert any("leave-one-source-out could not be run" in r for r in unmeasured.reasons)


# predictions and the advice ----------------------------------------------------------------------------------------


def test_prediction_leaves_the_datasets_own_source_out():
    rows = study_rows()
    (fit,) = fit_table(rows, "accuracy")
    inside = predict_method(fit, "dm", 10, "accuracy", 0.6, 0.02, source="a")
    assert inside.left_out == ["a"] and inside.tasks == 12 and "out of sample" in inside.note
    new = predict_method(fit, "dm", 10, "accuracy", 0.6, 0.02, source="brand-new")
    assert new.left_out == [] and new.tasks == 16
    assert new.gain_interval == pytest.approx((new.interval[0] - 0.6, new.interval[1] - 0.6))
    none = predict_method(None, "mtt", 10, "accuracy", 0.6)
    assert none.predicted is None and not none.validated


def test_recommendation_distill_random_or_not_enough_evidence():
    gain = study_rows(slope=0.9, intercept=0.25, offset=0.01, noise=0.005)  # a large, certain gain
    fits = fit_table(gain, "accuracy")
    advice = recommend(predict_all(fits, 10, 0.5, 0.02), 10)
    assert advice.kind == "distill" and advice.method == "dm" and advice.line.startswith("distill with DM")
    assert "16 tasks from 4 source group(s)" in advice.basis and "validated: dm" in advice.basis
    same = study_rows(slope=1.0, intercept=-0.15, offset=0.01, noise=0.005)  # below random everywhere
    advice = recommend(predict_all(fit_table(same, "accuracy"), 10, 0.5, 0.02), 10)
    assert advice.kind == "random" and advice.line.startswith("a random subset is as good")
    weak = fit_table(study_rows(sources=("a", "b")), "accuracy")  # not validated
    advice = recommend(predict_all(weak, 10, 0.5, 0.02), 10)
    assert advice.kind == "insufficient" and "no validated fit" in advice.line and "< 3" in advice.line
    advice = recommend(predict_all(fits, 1, 0.5, 0.02), 1)  # no fit at this IPC
    assert advice.kind == "insufficient" and "no method has a fit at IPC 1" in advice.line


# commands ------------------------------------------------------------------------------------------------------------


def write_table(folder, rows):
    table = ResultsTable(folder)
    for r in rows:
        table.append(r)
    return table.csv_path


def test_predict_on_a_tiny_constructed_table_prints_the_advice(tmp_path, data_root, capsys):
    rows = study_rows(ipc=1) + study_rows(method="dc", ipc=1, sources=("a", "b"), seed=1)
    rows += [row(f"{s}:t0", s, "random", 1, 0.5, 0.5) for s in "abcd"]
    csv_path = write_table(tmp_path / "t", rows)
    out = tmp_path / "p.json"
    assert main(["predict", "--dataset", "breastmnist", "--ipc", "1", "--table", str(csv_path), "--threads", "1",
                 "--metric", "accuracy", "--cache", str(tmp_path / "cache"), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "recommendation: " in printed and "the advice rests on" in printed
    assert "NOT VALIDATED" in printed and "validated" in printed
    result = json.loads(out.read_text())
    ind = result["indicator"]
    assert ind["subsets"] == 5 and ind["models"] == 1 and ind["epochs"] == 2 and len(ind["values"]) == 5
    assert 0 <= ind["mean"] <= 1 and ind["std"] >= 0
    by_method = {p["method"]: p for p in result["predictions"]}
    assert by_method["dm"]["validated"] and not by_method["dc"]["validated"]
    for p in by_method.values():
        assert 0 <= p["predicted"] <= 1 and 0 <= p["interval"][0] <= p["interval"][1] <= 1
        assert p["gain"] == pytest.approx(p["predicted"] - ind["mean"])
    assert result["recommendation"]["kind"] in ("distill", "random", "insufficient")


def test_report_writes_markdown_scatter_and_calibration(tmp_path):
    rows = study_rows() + study_rows(method="dc", sources=("a", "b"), seed=2) + study_rows(ipc=1, seed=3)
    for r in rows:
        r["wall_seconds"] = 90.0 if r["method"] == "dm" else 180.0
    csv_path = write_table(tmp_path / "t", rows)
    assert main(["report", "--table", str(csv_path), "--out", str(tmp_path / "r"), "--metric", "accuracy"]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    for png in ("scatter.png", "calibration.png"):
        assert (tmp_path / "r" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## Verdict" in md and "Validated on accuracy: dm at IPC 1, dm at IPC 10" in md
    assert "| dc | 10 | 8 | 2 |" in md and "(< 3)" in md
    assert "Leave-one-source-out, per held-out source" in md and "## Fits: balanced accuracy" in md
    dm_cells, dc_cells = sum(r["method"] == "dm" for r in rows), sum(r["method"] == "dc" for r in rows)
    hours = (dm_cells * 90 + dc_cells * 180) / 3600
    assert f"wall times sum to {hours:.1f} h (dc {dc_cells * 180 / 3600:.2f} h, dm {dm_cells * 90 / 3600:.2f} h)" in md


def test_a_validated_line_that_y_equals_x_beats_is_flagged(tmp_path):
    # the method scores what random subsets score (y = x + noise): the line is validated but y = x predicts better
    rows = study_rows(slope=1.0, intercept=0.0, offset=0.0, noise=0.01, seed=4)
    (fit,) = fit_table(rows, "accuracy")
    assert fit.validated and fit.identity_predicts_better, (fit.reasons, fit.loso.mae, fit.loso.mae_identity)
    (lifted,) = fit_table(study_rows(), "accuracy")  # y = 0.1 + 0.9 x: a real gain, and the line beats y = x
    assert lifted.validated and not lifted.identity_predicts_better
    assert main(["report", "--table", str(write_table(tmp_path / "t", rows)), "--out", str(tmp_path / "r"),
                 "--metric", "accuracy"]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    assert "**yes** (but y = x predicts better)" in md
    assert f"MAE {fit.loso.mae_identity:.3f} against {fit.loso.mae:.3f}" in md


def test_gain_table_counts_tasks_above_the_indicator_and_its_spread():
    from medistill.predictor.report import gain_table

    rows = [row("a:t0", "a", "dm", 10, 0.5, 0.60, spread=0.05), row("b:t0", "b", "dm", 10, 0.5, 0.52, spread=0.05),
            row("c:t0", "c", "dm", 10, 0.6, 0.50, spread=0.05),
            row("a:t0", "a", "dm", 10, 0.5, 0.64, seed=1, spread=0.05),  # seeds averaged: 0.62, gain +0.12
            row("simulation:a_v_b_v_c", "a+b+c", "dm", 10, 0.5, 0.99, spread=0.05)]  # not evidence: not counted
    (fit,) = fit_table(rows, "accuracy")
    assert fit.gains == pytest.approx([0.12, 0.02, -0.10])
    assert gain_table([fit])[2] == "| dm | 10 | 3 | +0.013 (-0.100 … +0.120) | 2/3 | 1/3 |"


def test_report_names_methods_whose_scores_coincide():
    from medistill.predictor.report import coinciding_methods

    herding = study_rows(method="herding", ipc=1, seeds=(0,))
    same = [dict(r, method="kcenter") for r in herding]
    other = [dict(r, method="dm", balanced_accuracy_mean=r["balanced_accuracy_mean"] + 0.01) for r in herding]
    assert coinciding_methods(herding + same + other) == [("herding", "kcenter", 1, 16)]
    same[0]["balanced_accuracy_mean"] += 1e-9  # one task differs: no longer the same evidence
    assert coinciding_methods(herding + same + other) == []


def test_clear_errors(tmp_path, data_root, capsys):
    assert main(["predict", "--dataset", "breastmnist", "--ipc", "1", "--table", str(tmp_path / "none.csv")]) == 2
    assert "no study table" in capsys.readouterr().err
    assert main(["report", "--table", str(tmp_path / "none.csv"), "--out", str(tmp_path)]) == 2
    csv_path = write_table(tmp_path / "t", study_rows(ipc=1))
    base = ["predict", "--dataset", "breastmnist", "--table", str(csv_path)]
    assert main(base + ["--ipc", "1", "--method", "mtt"]) == 2
    assert "no rows" in capsys.readouterr().err
    assert main(base + ["--ipc", "1000"]) == 2
    assert "exceeds the smallest class" in capsys.readouterr().err
    assert main(["predict", "--dataset", "nosuchmnist", "--ipc", "1", "--table", str(csv_path)]) == 2
    assert "unknown MedMNIST dataset" in capsys.readouterr().err
    assert main(base + ["--ipc", "1", "--subsets", "1"]) == 2
    assert "--subsets must be ≥ 2" in capsys.readouterr().err


def test_the_predictor_imports_nothing_from_the_study():
    code = ("import sys, medistill.predictor, medistill.predictor.report, "
            "medistill.predictor.indicator; bad = [m for m in sys.modules if m.startswith('medistill.study')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
    from medistill.predictor.indicator import INDICATOR_SEED
    from medistill.study.compute import INDICATOR_SEED as STUDY_SEED
    assert INDICATOR_SEED == STUDY_SEED
