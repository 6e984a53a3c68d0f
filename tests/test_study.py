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
    assert dm["source"] == "breastmnist" and dm["classes"] == 2
    # one indicator per (task, IPC): the random cell's score, shared by the DM row (not DM's own protocol)
    assert rnd["random_accuracy_mean"] == rnd["accuracy_mean"] == dm["random_accuracy_mean"]
    assert dm["random_subsets"] == 5 and dm["verdict"] in ("beats random", "does not beat random")
    assert Path(dm["run_folder"], "study_metrics.json").exists()
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


# the study preset, per-method seeds, tasks, cost estimate, work stealing -------------------------------------------


def test_per_method_seeds_run_first_seeds_first():
    from medistill.study.cells import seeds_by_method

    cells = grid(["a", "b"], ["random", "dm"], [1, 10], {"dm": [0, 1, 2], "*": [0]}, Budget("study"))
    ids = [c.id for c in cells]
    assert len(ids) == len(set(ids)) == 2 * 2 * (1 + 3)
    firsts = [c for c in cells if c.seed == 0]
    assert cells[:len(firsts)] == firsts  # every task and method once before any further seed
    assert [c.id for c in cells[len(firsts):len(firsts) + 2]] == ["a-dm-ipc1-study-s1", "a-dm-ipc1-study-s2"]
    assert seeds_by_method([0, 1], ["dm", "dc"]) == {"dm": [0, 1], "dc": [0, 1]}
    with pytest.raises(ValueError, match="does not run"):
        seeds_by_method({"mtt": [0]}, ["dm"])


def test_seed_spec_on_the_command_line():
    from medistill.cli.study import _seeds

    assert _seeds("0,1") == [0, 1]
    assert _seeds("dm,dc=0,1,2;*=0") == {"dm": [0, 1, 2], "dc": [0, 1, 2], "*": [0]}


def test_study_preset_grid_covers_twelve_tasks_from_three_sources():
    from medistill.study.cells import STUDY_METHODS, STUDY_SEEDS, STUDY_TASKS, method_overrides
    from medistill.study.tasks import task_source

    sources = {task_source(t) for t in STUDY_TASKS}
    assert {"breastmnist", "retinamnist", "brain"} <= sources
    singles = [t for t in STUDY_TASKS if "+" not in task_source(t)]
    assert len(singles) >= 12 and any("+" in task_source(t) for t in STUDY_TASKS)  # + the simulation set
    budget = Budget("study")
    cells = grid(list(STUDY_TASKS), list(STUDY_METHODS), [1, 10], STUDY_SEEDS, budget)
    per = {m: sum(c.method == m for c in cells) for m in STUDY_METHODS}
    n = len(STUDY_TASKS) * 2
    assert per["dm"] == per["dc"] == 3 * n and per["dsa"] == per["mtt"] == per["random"] == n
    assert budget.resolved("random_subsets") >= 5 and budget.resolved("method_preset") == "quick"
    assert method_overrides(budget, "dm", 10) == {}  # the quick preset's distillation, unchanged
    assert method_overrides(Budget("study", iterations=7), "dc", 1) == {"iterations": 7}
    assert budget.resolved("eval_models") == 3 and budget.resolved("eval_epochs") == 300


def test_cost_model_charges_shared_work_once():
    from medistill.study.cost import TaskSize, cell_costs, score_seconds, step_seconds, summary, train_seconds

    budget = Budget("study")
    cells = grid(["a", "b"], ["random", "herding", "kcenter", "dm", "mtt"], [1, 10], {"dm": [0, 1], "*": [0]}, budget)
    sizes = {"a": TaskSize(2, 500, 100), "b": TaskSize(4, 5000, 1000)}
    costs = cell_costs(cells, sizes, budget)
    charged = lambda part: [x["cell"].id for x in costs if part in x["parts"]]
    assert charged("indicator") == [f"{d}-random-ipc{i}-study-s0" for i in (1, 10) for d in "ab"]
    assert charged("embedding") == ["a-herding-ipc1-study-s0", "b-herding-ipc1-study-s0"]
    assert charged("experts") == ["a-mtt-ipc1-study-s0", "b-mtt-ipc1-study-s0"]
    by_id = {x["cell"].id: x for x in costs}
    assert by_id["b-dm-ipc10-study-s1"]["seconds"] > by_id["a-dm-ipc10-study-s1"]["seconds"]
    assert train_seconds(512 + 20, 1, False) == pytest.approx(2 * (2 * step_seconds(256) + step_seconds(20)))
    assert score_seconds(20, sizes["a"], 2, 150, False) == pytest.approx(2 * (train_seconds(20, 150, False) + 100 * 0.0015))
    total = summary(costs, 2)
    assert total["cpu_hours"] == pytest.approx(sum(x["seconds"] for x in costs) / 3600)
    assert total["wall_hours"] == pytest.approx(total["cpu_hours"] / 2)


def test_the_whole_study_grid_fits_about_twelve_cpu_hours(data_root):
    from medistill.study.cells import STUDY_METHODS, STUDY_SEEDS, STUDY_TASKS
    from medistill.study.cost import TaskSize, cell_costs, summary
    from medistill.study.tasks import TaskLoader

    loader = TaskLoader()
    sizes = {t: TaskSize.of(loader.load(t)) for t in STUDY_TASKS}
    budget = Budget("study")
    cells = grid(list(STUDY_TASKS), list(STUDY_METHODS), [1, 10], STUDY_SEEDS, budget)
    hours = summary(cell_costs(cells, sizes, budget), 2)["cpu_hours"]
    assert 6 <= hours <= 12.5


def test_steal_takes_the_other_shards_unclaimed_cells(tmp_path):
    cells = small_grid()
    alone = run_study(cells, tmp_path / "s", fake_row, rank=0, world_size=2, log=lambda _: None, steal=True)
    assert len(alone.computed) == len(cells)
    plain = run_study(cells, tmp_path / "p", fake_row, rank=0, world_size=2, log=lambda _: None)
    assert len(plain.computed) == len(shard(cells, 0, 2))
    # the other shard's cell in progress (claimed by a live process) is left to it
    board = ClaimBoard(tmp_path / "q" / "claims", ResultsTable(tmp_path / "q").locked)
    board.path(cells[1].id).parent.mkdir(parents=True)
    board.path(cells[1].id).write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname(), "time": 0}))
    busy = run_study(cells, tmp_path / "q", fake_row, rank=0, world_size=2, log=lambda _: None, steal=True)
    assert busy.busy == [cells[1].id] and len(busy.computed) == len(cells) - 1


def test_herding_and_kcenter_share_one_cached_embedding(tmp_path, breast, monkeypatch):
    from medistill.selection import select
    from medistill.study import compute
    from medistill.study.compute import CellComputer

    monkeypatch.setattr(compute, "EMBED_EPOCHS", 1)
    computer = CellComputer(Budget("study"), tmp_path, progress=False)
    calls = []
    real = compute.embedding_features
    monkeypatch.setattr(compute, "embedding_features", lambda *a, **k: calls.append(a) or real(*a, **k))
    for selector in ("herding", "kcenter"):
        for ipc in (1, 3):
            mine = computer.selection(breast, selector, ipc, seed=0)
            theirs = select(breast, selector, ipc, seed=0, embed_epochs=1)
            assert mine.metadata == theirs.metadata and torch.equal(mine.images, theirs.images)
    assert len(calls) == 1


def test_study_of_a_task_records_its_source_and_class_count(tmp_path, data_root, capsys):
    out = tmp_path / "out"
    args = ["study", "--datasets", "retinamnist:0v1+2+3+4", "--methods", "random,dm", "--ipcs", "1",
            "--iterations", "2", "--eval-models", "1", "--eval-epochs", "2", "--threads", "1", "--out", str(out),
            "--runs", str(tmp_path / "runs")]
    assert main(args + ["--dry-run", "--world-size", "2"]) == 0
    printed = capsys.readouterr().out
    assert "retinamnist:0v1-4-random-ipc1-quick~" in printed and "of CPU" in printed and "indicator" in printed
    assert main(args) == 0
    rows = read_table(out / "study.csv")
    assert {r["dataset"] for r in rows} == {"retinamnist:0v1-4"}
    assert {r["source"] for r in rows} == {"retinamnist"} and {r["classes"] for r in rows} == {2}
