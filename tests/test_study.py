"""The study runner (grid, claims, table, resume, concurrency, import of run folders) and the combined dataset."""
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from medistill.cli import main
from medistill.study import Budget, ClaimBoard, ResultsTable, grid, read_table, run_study, shard

REPO = Path(__file__).resolve().parents[1]


def fake_row(cell, accuracy=0.5):
    return {"cell_id": cell.id, "dataset": cell.dataset, "method": cell.method, "kind": cell.kind, "ipc": cell.ipc,
            "seed": cell.seed, "preset": cell.budget, "accuracy_mean": accuracy, "accuracy_std": 0.0}


def small_grid():
    return grid(["a", "b"], ["dm", "random", "full"], [1, 2], [0], Budget("quick"))


def test_grid_ids_order_and_sharding():
    cells = small_grid()
    ids = [c.id for c in cells]
    assert ids[:4] == ["a-dm-ipc1-quick-s0", "b-dm-ipc1-quick-s0", "a-random-ipc1-quick-s0", "b-random-ipc1-quick-s0"]
    assert "a-full-all-quick-s0" in ids and sum("full" in i for i in ids) == 2  # full once per dataset
    assert len(ids) == len(set(ids)) == 10
    shards = [shard(cells, r, 3) for r in range(3)]
    assert sorted(c.id for s in shards for c in s) == sorted(ids)
    assert shards[1] == cells[1::3]
    with pytest.raises(ValueError, match="rank"):
        shard(cells, 3, 3)
    with pytest.raises(ValueError, match="unknown method"):
        grid(["a"], ["dm", "gan"], [1], [0], Budget("quick"))
    assert Budget("quick").tag == "quick"
    assert Budget("quick", iterations=2).tag != Budget("quick", iterations=3).tag
    with pytest.raises(ValueError, match="unknown preset"):
        Budget("fast")


def test_table_csv_and_json_hold_the_same_rows(tmp_path):
    table = ResultsTable(tmp_path)
    cells = small_grid()[:3]
    for c in cells:
        assert table.append(fake_row(c))
    assert not table.append(fake_row(cells[0], accuracy=0.9))  # a cell is recorded once
    from_csv, from_json = read_table(table.csv_path), read_table(table.json_path)
    assert [r["cell_id"] for r in from_csv] == [c.id for c in cells]
    assert from_csv == from_json
    assert from_csv[0]["accuracy_mean"] == 0.5 and from_csv[0]["ipc"] == 1 and from_csv[0]["random_auc_mean"] is None


def test_resume_skips_finished_cells_and_redoes_a_failed_one(tmp_path):
    cells = small_grid()
    broken = cells[2].id

    def compute(cell):
        if cell.id == broken:
            raise RuntimeError("simulated crash")
        return fake_row(cell)

    first = run_study(cells, tmp_path, compute, log=lambda _: None)
    assert first.failed.keys() == {broken} and len(first.computed) == len(cells) - 1
    assert not list((tmp_path / "claims").glob("*.claim"))  # the failed cell's claim was released
    seen = []
    second = run_study(cells, tmp_path, lambda c: seen.append(c.id) or fake_row(c), log=lambda _: None)
    assert seen == [broken] and len(second.skipped) == len(cells) - 1
    assert sorted(r["cell_id"] for r in ResultsTable(tmp_path).records()) == sorted(c.id for c in cells)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_claims_exclusive_stale_recovery_and_foreign_hosts(tmp_path):
    table = ResultsTable(tmp_path)
    board = ClaimBoard(tmp_path / "claims", table.locked)
    other = ClaimBoard(tmp_path / "claims", table.locked)
    assert board.claim("x")
    assert not other.claim("x")  # held by a live process (this one)
    # A claim held by a live process (our parent) is not taken.
    board.path("y").parent.mkdir(exist_ok=True)
    board.path("y").write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname(), "time": 0}))
    assert not other.claim("y")
    # A claim left by a dead process on this host is taken over.
    board.path("z").write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "time": 0}))
    assert other.claim("z") and other.owner("z")["pid"] == os.getpid()
    # A claim from another host is never judged stale.
    board.path("w").write_text(json.dumps({"pid": _dead_pid(), "host": "elsewhere.invalid", "time": 0}))
    assert not other.claim("w")
    # release only removes our own claim
    other.release("y")
    assert board.path("y").exists()


WORKER = textwrap.dedent("""
    import os, sys, time
    from medistill.study import Budget, grid, run_study
    out, log, rank, world, hang = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    cells = grid(["a", "b", "c"], ["dm", "dc", "random"], [1, 2], [0], Budget("quick"))

    def compute(cell):
        with open(log, "a") as f:
            f.write(f"{cell.id} {os.getpid()}\\n")
        if cell.id == hang:
            time.sleep(600)
        time.sleep(float(os.environ.get("CELL_SECONDS", "0.05")))
        return {"cell_id": cell.id, "dataset": cell.dataset, "method": cell.method, "kind": cell.kind,
                "ipc": cell.ipc, "seed": cell.seed, "preset": cell.budget, "accuracy_mean": len(cell.id) / 100}

    outcome = run_study(cells, out, compute, rank=rank, world_size=world, log=lambda _: None)
    print(len(outcome.computed), len(outcome.busy))
""")


def _worker(tmp_path, out, log, rank=0, world=1, hang="-", cell_seconds=0.05):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "CELL_SECONDS": str(cell_seconds)}
    return subprocess.Popen([sys.executable, str(script), str(out), str(log), str(rank), str(world), hang],
                            env=env, stdout=subprocess.PIPE, text=True)


def _rows(out):
    return sorted(({k: v for k, v in r.items() if k not in ("pid", "host", "finished_at")}
                   for r in ResultsTable(out).records()), key=lambda r: r["cell_id"])


def test_two_concurrent_processes_compute_each_cell_once(tmp_path):
    single = _worker(tmp_path, tmp_path / "one", tmp_path / "one.log")
    single.wait()
    pair = [_worker(tmp_path, tmp_path / "two", tmp_path / "two.log", cell_seconds=0.4) for _ in range(2)]
    for p in pair:
        p.wait()
    computed = [line.split() for line in (tmp_path / "two.log").read_text().splitlines()]
    assert len({pid for _, pid in computed}) == 2  # both processes did work
    assert len(computed) == len({cell for cell, _ in computed}) == 18  # every cell once, no cell twice
    assert _rows(tmp_path / "two") == _rows(tmp_path / "one")
    # rank/world-size pre-partition: each rank computes exactly its round-robin share
    ranks = [_worker(tmp_path, tmp_path / "ranked", tmp_path / "ranked.log", rank=r, world=2) for r in range(2)]
    outputs = [p.communicate()[0].split() for p in ranks]
    assert [int(o[0]) for o in outputs] == [9, 9]
    assert _rows(tmp_path / "ranked") == _rows(tmp_path / "one")


def test_killed_process_loses_only_its_cell_in_progress(tmp_path):
    out, log = tmp_path / "s", tmp_path / "s.log"
    hang = "a-dc-ipc1-quick-s0"  # the 4th cell
    proc = _worker(tmp_path, out, log, hang=hang)
    deadline = time.time() + 60
    while not (log.exists() and hang in log.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(ResultsTable(out).records()) == 3 and (out / "claims" / f"{hang}.claim").exists()
    again = _worker(tmp_path, out, log)  # sees the dead owner's claim as stale and redoes the cell
    assert again.communicate()[0].split() == ["15", "0"]
    assert len(_rows(out)) == 18
    assert not list((out / "claims").glob("*.claim"))


def test_real_study_on_breastmnist_resumes_and_imports_run_folders(tmp_path, data_root, capsys):
    args = ["study", "--datasets", "breastmnist", "--methods", "dm,random", "--ipcs", "1", "--iterations", "2",
            "--eval-models", "1", "--eval-epochs", "2", "--threads", "1"]
    out, runs = tmp_path / "out", tmp_path / "runs"
    assert main(args + ["--out", str(out), "--runs", str(runs)]) == 0
    rows = {r["cell_id"]: r for r in read_table(out / "study.csv")}
    assert len(rows) == 2
    (dm_id,) = [k for k in rows if "-dm-" in k]
    dm, rnd = rows[dm_id], rows[dm_id.replace("-dm-", "-random-")]
    assert dm["images"] == 2 and dm["eval_augment"] and not dm["reused"] and 0 <= dm["accuracy_mean"] <= 1
    assert dm["random_accuracy_mean"] is not None and rnd["random_accuracy_mean"] == rnd["accuracy_mean"]
    assert Path(dm["run_folder"], "metrics.json").exists()
    capsys.readouterr()
    assert main(args + ["--out", str(out), "--runs", str(runs)]) == 0
    assert "0 computed, 2 already done" in capsys.readouterr().out
    # A new study importing the finished run folder records it without recomputing.
    assert main(args + ["--out", str(tmp_path / "out2"), "--runs", str(tmp_path / "runs2"), "--import-runs",
                        str(runs), "--methods", "dm", "--import-only"]) == 0
    (imported,) = read_table(tmp_path / "out2" / "study.csv")
    assert imported["reused"] and imported["accuracy_mean"] == dm["accuracy_mean"]
    # A different budget is a different cell: nothing to import.
    assert main(args[:-2] + ["--iterations", "3", "--threads", "1", "--out", str(tmp_path / "out3"), "--runs",
                             str(tmp_path / "runs3"), "--import-runs", str(runs), "--methods", "dm",
                             "--import-only"]) == 0
    assert not (tmp_path / "out3" / "study.csv").exists()


def test_study_clear_errors(tmp_path, data_root, capsys):
    base = ["study", "--out", str(tmp_path), "--runs", str(tmp_path / "r"), "--dry-run"]
    assert main(base + ["--datasets", "nosuchmnist"]) == 2
    assert "unknown MedMNIST dataset" in capsys.readouterr().err
    assert main(base + ["--datasets", "breastmnist", "--methods", "gan"]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert main(base + ["--datasets", "breastmnist", "--ipcs", "500"]) == 2
    assert "exceeds the smallest class" in capsys.readouterr().err
    assert main(base + ["--datasets", "breastmnist", "--import-runs", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_simulation_dataset_combines_datasets_as_classes(data_root):
    from medistill.data import load_dataset
    from medistill.data.combined import CLASS_CAP

    d = load_dataset("simulation")
    assert d.class_names == ["breastmnist", "retinamnist"] and d.num_classes == 2
    assert d.train_images.shape == (600, 3, 28, 28) and d.channels == 3
    assert d.class_counts("train") == [300, 300] and d.class_counts("val") == [50, 50]
    assert d.class_counts("test") == [CLASS_CAP["test"]] * 2
    pixels = d.denormalize(d.train_images)
    grey = pixels[d.train_labels == 0]
    assert torch.allclose(grey[:, 0], grey[:, 1], atol=1e-5) and torch.allclose(grey[:, 0], grey[:, 2], atol=1e-5)
    colour = pixels[d.train_labels == 1]
    assert not torch.allclose(colour[:, 0], colour[:, 1], atol=1e-2)  # RetinaMNIST stays colour
    again = load_dataset("simulation")
    assert torch.equal(again.train_images, d.train_images) and again.md5 == d.md5
    # the train draw comes from BreastMNIST's own train split
    breast = load_dataset("breastmnist")
    first = grey[0, 0]
    raw = breast.denormalize(breast.train_images)[:, 0]
    assert (raw - first).abs().flatten(1).max(1).values.min() < 1e-5
