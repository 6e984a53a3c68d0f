"""The indicator fit (correlations, regression, LODO, prediction intervals), predict and report."""
import json

import numpy as np
import pytest

from medistill.cli import main
from medistill.predictor import correlation, fit_line, fit_table, leave_one_dataset_out, pairs_from_table
from medistill.predictor.fit import Pair, best_fit
from medistill.predictor.predict import predict_all
from medistill.study.table import ResultsTable


def row(dataset, method, ipc, x, y, epochs=2, augment=False):
    """A table row with random-subset score x and method score y for every metric."""
    r = {"cell_id": f"{dataset}-{method}-ipc{ipc}-t-s0", "dataset": dataset, "method": method,
         "kind": "distilled", "ipc": ipc, "seed": 0, "preset": "t", "eval_models": 1, "eval_epochs": epochs,
         "eval_augment": augment}
    for m in ("accuracy", "balanced_accuracy", "auc"):
        r.update({f"{m}_mean": y, f"{m}_std": 0.0, f"random_{m}_mean": x, f"random_{m}_std": 0.0})
    return r


def linear_rows(method="dm", slope=0.5, intercept=0.3, xs=(0.2, 0.4, 0.6, 0.8), ipc=1):
    return [row(f"d{i}", method, ipc, x, intercept + slope * x) for i, x in enumerate(xs)]


def test_perfect_linear_relation_gives_r_one_and_zero_lodo_error():
    rows = linear_rows()
    (fit,) = fit_table(rows, "accuracy")
    assert fit.correlation.pearson == pytest.approx(1.0)
    assert fit.correlation.spearman == pytest.approx(1.0)
    assert fit.line.slope == pytest.approx(0.5) and fit.line.intercept == pytest.approx(0.3)
    assert fit.lodo.mae == pytest.approx(0.0, abs=1e-12)
    assert fit.validated
    lo, hi = fit.line.interval(0.5)
    assert lo == pytest.approx(0.55) and hi == pytest.approx(0.55)  # no residual spread


def test_two_points_claim_no_correlation_and_are_not_validated():
    rows = linear_rows(xs=(0.3, 0.7))
    (fit,) = fit_table(rows, "accuracy")
    assert fit.correlation.n == 2 and fit.correlation.pearson is None and fit.correlation.spearman is None
    assert fit.line.slope == pytest.approx(0.5)  # a line through two points is still a description
    assert fit.line.interval(0.5) is None
    assert not fit.validated and fit.lodo.mae is None
    (p,) = predict_all(rows, ["dm"], "accuracy", 1, {"dm": 0.5})
    assert p.predicted == pytest.approx(0.55) and p.interval is None and not p.validated
    assert "not validated" in p.note


def test_three_points_from_two_datasets_are_described_but_not_validated():
    rows = [row("a", "dc", 1, 0.2, 0.4), row("a", "dc", 10, 0.5, 0.6), row("b", "dc", 1, 0.6, 0.9)]
    (fit,) = fit_table(rows, "accuracy")
    assert fit.correlation.n == 3 and fit.correlation.pearson is not None
    assert fit.correlation.pearson_ci is None  # no bootstrap below 4 points
    assert fit.line.interval(0.4) is not None
    assert not fit.validated and fit.lodo.mae is None and "not validated" in fit.lodo.note


def test_constant_indicator_gives_no_fit_rather_than_a_number():
    c = correlation([0.5, 0.5, 0.5, 0.5], [0.1, 0.2, 0.3, 0.4])
    assert c.pearson is None and c.spearman is None
    assert fit_line([0.5, 0.5], [0.1, 0.2]).slope is None


def test_bootstrap_ci_brackets_the_estimate():
    rng = np.random.default_rng(1)
    x = rng.uniform(0.2, 0.9, 12)
    y = 0.8 * x + rng.normal(0, 0.05, 12)
    c = correlation(x, y)
    assert -1 <= c.pearson_ci[0] <= c.pearson <= c.pearson_ci[1] <= 1
    assert c.spearman_ci[0] <= c.spearman <= c.spearman_ci[1]


def test_prediction_interval_covers_new_points_at_its_nominal_rate():
    rng = np.random.default_rng(0)
    hits, trials = 0, 2000
    for _ in range(trials):
        x = rng.uniform(0, 1, 6)
        y = 0.2 + 0.7 * x + rng.normal(0, 0.1, 6)
        x0 = rng.uniform(0, 1)
        lo, hi = fit_line(x, y).interval(x0)
        hits += lo <= 0.2 + 0.7 * x0 + rng.normal(0, 0.1) <= hi
    assert 0.93 <= hits / trials <= 0.97


def test_lodo_error_is_the_held_out_error_of_a_fit_without_that_dataset():
    pairs = [Pair("a", "m", 1, 0.0, 0.0), Pair("b", "m", 1, 1.0, 1.0), Pair("c", "m", 1, 2.0, 3.0)]
    lodo = leave_one_dataset_out(pairs)
    # without c: y = x, predicts 2 for truth 3; without a: y = 2x - 1, predicts -1 for 0; without b: y = 1.5x, 1.5 vs 1
    assert lodo.per_dataset == pytest.approx({"a": 1.0, "b": 0.5, "c": 1.0})
    assert lodo.mae == pytest.approx(2.5 / 3)
    # ignoring the indicator: without a, mean 2 vs 0; without b, 1.5 vs 1; without c, 0.5 vs 3
    assert lodo.mean_only_mae == pytest.approx((2 + 0.5 + 2.5) / 3)


def test_per_ipc_fits_where_three_points_and_best_fit_prefers_them():
    rows = linear_rows(ipc=1) + linear_rows(slope=1.0, intercept=0.0, ipc=10)
    fits = fit_table(rows, "accuracy")
    assert {(f.method, f.ipc) for f in fits} == {("dm", None), ("dm", 1), ("dm", 10)}
    assert best_fit(fits, "dm", 10).line.slope == pytest.approx(1.0)
    assert best_fit(fits, "dm", 5).ipc is None  # no IPC 5 points: pooled


def test_pairs_leave_out_random_full_and_missing_scores():
    rows = linear_rows() + [row("d0", "random", 1, 0.3, 0.3), {**row("d0", "full", None, 0.3, 0.9)},
                            {**row("d9", "dc", 1, 0.3, 0.9), "random_accuracy_mean": None}]
    assert {p.method for p in pairs_from_table(rows, "accuracy")} == {"dm"}
    assert len(pairs_from_table(rows, "accuracy")) == 4


def write_table(folder, rows):
    table = ResultsTable(folder)
    for r in rows:
        table.append(r)
    return table.csv_path


def test_report_writes_markdown_and_png(tmp_path):
    csv_path = write_table(tmp_path / "t", linear_rows("dm") + linear_rows("dc", slope=0.9, xs=(0.3, 0.5)))
    assert main(["report", "--table", str(csv_path), "--out", str(tmp_path / "r")]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    png = (tmp_path / "r" / "scatter.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "6 finished cells" in md and "balanced accuracy" in md and "AUC" in md
    assert "dc: 2 point(s) from 2 dataset(s): **not validated**" in md
    assert "| dm | all | 4 | 4 | 1.00" in md


def test_predict_end_to_end_on_breastmnist(tmp_path, data_root):
    rows = (linear_rows("dc", slope=0.5, intercept=0.3, xs=(0.2, 0.4, 0.6)) +
            [row(f"d{i}", "dm", 1, x, 0.2 + x, augment=True) for i, x in enumerate((0.3, 0.5))])
    csv_path = write_table(tmp_path / "t", rows)
    out = tmp_path / "p.json"
    assert main(["predict", "--dataset", "breastmnist", "--ipc", "1", "--table", str(csv_path), "--threads", "1",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert {i["dsa"] for i in result["indicator"]} == {False, True}  # measured as each method's rows were
    for ind in result["indicator"]:
        assert ind["epochs"] == 2 and len(ind["accuracy"]["values"]) == 3
        assert 0 <= ind["accuracy"]["mean"] <= 1
    by_method = {p["method"]: p for p in result["predictions"]}
    plain = next(i for i in result["indicator"] if not i["dsa"])["accuracy"]["mean"]
    assert by_method["dc"]["predicted"] == pytest.approx(0.3 + 0.5 * plain)
    assert by_method["dc"]["validated"] and by_method["dc"]["interval"] is not None
    assert not by_method["dm"]["validated"] and by_method["dm"]["interval"] is None


def test_clear_errors(tmp_path, data_root, capsys):
    assert main(["predict", "--dataset", "breastmnist", "--table", str(tmp_path / "none.csv")]) == 2
    assert "no study table" in capsys.readouterr().err
    assert main(["report", "--table", str(tmp_path / "none.csv"), "--out", str(tmp_path)]) == 2
    csv_path = write_table(tmp_path / "t", linear_rows())
    assert main(["predict", "--dataset", "breastmnist", "--table", str(csv_path), "--method", "mtt"]) == 2
    assert "no rows" in capsys.readouterr().err
    assert main(["predict", "--dataset", "breastmnist", "--table", str(csv_path), "--ipc", "1000"]) == 2
    assert "exceeds the smallest class" in capsys.readouterr().err
    assert main(["predict", "--dataset", "nosuchmnist", "--table", str(csv_path)]) == 2
    assert "unknown MedMNIST dataset" in capsys.readouterr().err
    assert main(["predict", "--dataset", "breastmnist", "--table", str(csv_path), "--subsets", "2"]) == 2
    assert "--subsets must be" in capsys.readouterr().err
