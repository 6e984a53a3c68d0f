"""The command line end to end on real BreastMNIST (small budgets)."""
import json
import subprocess
import sys

from medistill.cli import main


def test_info_reports_build_and_data(data_root, capsys):
    assert main(["info", "--data-root", str(data_root)]) == 0
    out = capsys.readouterr().out
    assert "CPU kernels:" in out and "CUDA kernels:" in out
    assert "breastmnist      found" in out and "chestmnist       refused" in out


def test_baseline_then_evaluate(data_root, tmp_path, capsys):
    result = tmp_path / "r.json"
    saved = tmp_path / "set.pt"
    assert main(["baseline", "--dataset", "breastmnist", "--data-root", str(data_root), "--ipc", "2",
                 "--models", "2", "--epochs", "2", "--json", str(result), "--save", str(saved)]) == 0
    payload = json.loads(result.read_text())
    assert payload["images"] == 4 and len(payload["per_model"]) == 2
    assert 0 <= payload["summary"]["accuracy"]["mean"] <= 1
    assert main(["evaluate", str(saved), "--data-root", str(data_root), "--models", "1", "--epochs", "1"]) == 0
    assert "acc " in capsys.readouterr().out


def test_bad_ipc_is_a_clear_error(data_root, capsys):
    assert main(["baseline", "--dataset", "breastmnist", "--data-root", str(data_root), "--ipc", "500"]) == 2
    assert "exceeds the smallest class" in capsys.readouterr().err


def test_python_dash_m(data_root):
    out = subprocess.run([sys.executable, "-m", "medistill", "info", "--data-root", str(data_root)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "compiled ops:" in out.stdout
