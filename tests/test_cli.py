"""The command line end to end on real BreastMNIST (small budgets)."""
import json
import subprocess
import sys

from medistill.cli import main


def test_info_reports_build_and_data(data_root, capsys):
    assert main(["info", "--data-root", str(data_root)]) == 0
    out = capsys.readouterr().out
    assert "CPU kernels:" in out and "CUDA kernels:" in out
    assert "breastmnist      found" in out and "chestmnist       missing" in out


def test_baseline_then_evaluate(data_root, tmp_path, capsys):
    result = tmp_path / "r.json"
    saved = tmp_path / "set.pt"
    assert main(["baseline", "--dataset", "breastmnist", "--data-root", str(data_root), "--ipc", "2", "--subsets", "2",
                 "--models", "2", "--epochs", "2", "--json", str(result), "--save", str(saved)]) == 0
    payload = json.loads(result.read_text())
    assert payload["images"] == 4 and payload["num_subsets"] == 2 and len(payload["summary"]["accuracy"]["values"]) == 4
    assert len(payload["subsets"]["accuracy"]["values"]) == 2
    assert 0 <= payload["summary"]["accuracy"]["mean"] <= 1
    out = capsys.readouterr().out
    assert "over 2 random subsets" in out and "subset 1 (seed 1)" in out
    # the saved set is the first subset: re-scoring it with the same settings gives subset 0's score
    evaluated = tmp_path / "e.json"
    assert main(["evaluate", str(saved), "--data-root", str(data_root), "--models", "2", "--epochs", "2",
                 "--json", str(evaluated)]) == 0
    assert json.loads(evaluated.read_text())["per_model"] == payload["per_subset"][0]["per_model"]


def test_dsa_flags_run(data_root, tmp_path, capsys):
    # these crashed with "DSAugment.forward() got an unexpected keyword argument 'generator'"
    saved = tmp_path / "set.pt"
    assert main(["baseline", "--dataset", "breastmnist", "--data-root", str(data_root), "--selector", "random",
                 "--ipc", "1", "--dsa", "--models", "1", "--epochs", "2", "--subsets", "2", "--save", str(saved)]) == 0
    assert "with DSA" in capsys.readouterr().out
    assert main(["evaluate", str(saved), "--data-root", str(data_root), "--dsa", "--models", "1", "--epochs", "1"]) == 0
    assert "with DSA" in capsys.readouterr().out


def test_evaluate_run_folder_reproduces_the_run(data_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["distill", "--dataset", "breastmnist", "--data-root", str(data_root), "--method", "dm", "--ipc", "1",
                 "--preset", "quick", "--iterations", "2", "--eval-models", "2", "--eval-epochs", "2",
                 "--random-subsets", "2", "--out", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["evaluated_with_dsa"] and metrics["distilled"]["config"]["dsa_strategy"]
    assert metrics["random"]["num_subsets"] == 2 and "comparison" in metrics
    summary = (run / "summary.txt").read_text()
    assert "verdict:" in summary and "random subsets (mean ± spread over subsets)" in summary
    rescored = tmp_path / "rescored.json"
    assert main(["evaluate", str(run), "--data-root", str(data_root), "--json", str(rescored)]) == 0
    assert "the same settings" in capsys.readouterr().out
    again = json.loads(rescored.read_text())
    assert again["per_model"] == metrics["distilled"]["per_model"]  # same networks, same DSA, same numbers
    assert again["summary"] == metrics["distilled"]["summary"]


def test_bad_ipc_is_a_clear_error(data_root, capsys):
    assert main(["baseline", "--dataset", "breastmnist", "--data-root", str(data_root), "--ipc", "500"]) == 2
    assert "exceeds the smallest class" in capsys.readouterr().err


def test_python_dash_m(data_root):
    out = subprocess.run([sys.executable, "-m", "medistill", "info", "--data-root", str(data_root)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "compiled ops:" in out.stdout
