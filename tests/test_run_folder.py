"""medistill.data.run_folder: what it writes reads back the same, and a folder that is not a run folder is named."""
from __future__ import annotations

import json

import pytest
import torch

from medistill.data import DataError, ImageSet
from medistill.data.run_folder import RUN_FILES, RunFolder
from medistill.export import load_run_source


def test_round_trip(tmp_path):
    run = RunFolder(tmp_path)
    assert run.existing() == []
    config = {"method": "dm", "ipc": 1, "evaluation": None}
    metrics = {"distilled": {"summary": {}}, "random": None, "majority_rate": 0.5}
    run.write_config(config)
    run.write_metrics(metrics)
    run.write_study_metrics({"settings": {"seed": 0}})
    run.write_summary("DM on x\n")
    run.write_checkpoint({"method": {"iteration": 3}, "losses": [1.0, 0.5]})
    assert run.read_config() == config and run.read_metrics() == metrics
    assert run.read_study_metrics() == {"settings": {"seed": 0}}
    assert run.read_checkpoint() == {"method": {"iteration": 3}, "losses": [1.0, 0.5]}
    assert run.summary_path.read_text() == "DM on x\n"
    assert run.config_path.read_text() == json.dumps(config, indent=1)  # the format the folders have always had
    assert run.existing() == ["config.json", "checkpoint.pt", "metrics.json", "summary.txt"]
    ImageSet(images=torch.zeros(2, 1, 4, 4), labels=torch.tensor([0, 1]), mean=torch.zeros(1), std=torch.ones(1),
             class_names=["a", "b"]).save(run.set_path)
    assert RunFolder.finished(tmp_path) == run
    assert ImageSet.load(tmp_path).labels.tolist() == [0, 1]  # a folder is read as its set
    source = load_run_source(tmp_path)
    assert source.config == config and source.metrics == metrics
    run.remove_run_files()
    assert run.existing() == [] and run.study_metrics_path.exists()  # only the run's own files (--force)
    assert set(RUN_FILES) >= {run.config_path.name, run.set_path.name, run.grid_path.name, run.loss_curve_path.name}


def test_not_a_run_folder(tmp_path):
    with pytest.raises(DataError, match=r"without synthetic_set\.pt: not a finished run folder"):
        RunFolder.finished(tmp_path)
    with pytest.raises(DataError, match="not a finished run folder"):
        load_run_source(tmp_path)
    run = RunFolder(tmp_path)
    ImageSet(images=torch.zeros(1, 1, 4, 4), labels=torch.tensor([0]), mean=torch.zeros(1), std=torch.ones(1),
             class_names=["a"]).save(run.set_path)
    run.metrics_path.write_text("{not json")
    with pytest.raises(DataError, match=r"metrics\.json is not valid JSON"):
        load_run_source(tmp_path)
