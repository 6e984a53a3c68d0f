"""scripts/dp_study.py's ``table``: the numbers RESULTS.md's DP-DM section quotes come from it, so its means,
spreads and the DP-DM − DP-SGD difference paired by seed are checked on hand-made cells."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "dp_study.py"


@pytest.fixture(scope="module")
def dp_study():
    spec = importlib.util.spec_from_file_location("dp_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cell(folder: Path, kind: str, eps: float, seed: int, bal: float, **extra) -> None:
    """One hand-made cell; its AUC is 0.1 above its balanced accuracy, so the two ε-across tables differ."""
    name = f"breastmnist-{kind}-eps{'inf' if eps == float('inf') else int(eps)}-s{seed}.json"
    record = {"dataset": "breastmnist", "kind": kind, "epsilon": eps, "seed": seed, "ipc": 10,
              "accuracy": bal, "balanced_accuracy": bal, "auc": bal + 0.1, "mia_auc": None, **extra}
    (folder / name).write_text(json.dumps(record))


def test_table_pairs_seeds_and_marks_missing_ones(dp_study, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    # ε = 1: DP-DM 0.60 / 0.70, DP-SGD 0.50 / 0.80 → paired differences +0.10 / −0.10 (mean 0, sd 0.141)
    _cell(results, "dpdm", 1.0, 0, 0.60, mia_auc=0.5, mia_targeted_auc=0.4)
    _cell(results, "dpdm", 1.0, 1, 0.70, mia_auc=0.6, mia_targeted_auc=0.6)
    _cell(results, "dpsgd", 1.0, 0, 0.50)
    _cell(results, "dpsgd", 1.0, 1, 0.80)
    # ε = 2: DP-SGD's seed 1 missing → only seed 0 is paired, and the cells say n = 1
    _cell(results, "dpdm", 2.0, 0, 0.65, mia_auc=0.5, mia_targeted_auc=0.5)
    _cell(results, "dpdm", 2.0, 1, 0.75, mia_auc=0.5, mia_targeted_auc=0.5)
    _cell(results, "dpsgd", 2.0, 0, 0.55)
    out = tmp_path / "TABLE.md"
    assert dp_study.main(["table", "--results", str(results), "--out", str(out)]) == 0
    text = out.read_text()
    balanced, auc = (_rows(text.split(heading)[1].split("\n\n")[1]) for heading in ("Balanced accuracy", "AUC (test"))
    rows = {**balanced, **_rows(text.split("Membership attack AUC")[1])}
    paired = rows[("breastmnist", "DP-DM − DP-SGD (paired by seed)")].split("|")
    assert paired[3].strip() == "0.000 ± 0.141"
    assert paired[4].strip() == "0.100 (n = 1)"
    assert rows[("breastmnist", "DP-DM")].split("|")[3].strip() == "0.650 ± 0.071"
    assert rows[("breastmnist", "attack AUC, targeted")].split("|")[3].strip() == "0.500 ± 0.141"
    assert "– | – |" in rows[("breastmnist", "DP-SGD")]  # ε = 4, 8 not run
    assert auc[("breastmnist", "DP-DM")].split("|")[3].strip() == "0.750 ± 0.071"  # the AUC table reads "auc"
    assert auc[("breastmnist", "DP-DM − DP-SGD (paired by seed)")].split("|")[3].strip() == "0.000 ± 0.141"


def _rows(table: str) -> dict[tuple, str]:
    """A markdown table's breastmnist lines keyed by (dataset, row label)."""
    return {tuple(c.strip() for c in line.strip("|").split("|")[:2]): line
            for line in table.splitlines() if line.startswith("| breastmnist |")}


def test_table_without_results_says_how_to_make_them(dp_study, tmp_path, capsys):
    assert dp_study.main(["table", "--results", str(tmp_path), "--out", str(tmp_path / "T.md")]) == 1
    assert "dp_study.py run" in capsys.readouterr().err
