"""Tasks derived from real sources (medistill.study.tasks): the grammar, class counts, relabelling,
renormalisation, distinct fingerprints, the simulation task from three sources, clear errors."""
import os

import pytest
import torch

from medistill.data import DataError
from medistill.study.tasks import TaskLoader, parse_task, task_name, task_source

from tests.conftest import SHARED_DATA

# the brain MRI folder where the study looks for it (beside the MedMNIST files), or where the variable points
BRAIN = os.environ.get("MEDISTILL_BRAIN_MRI") or str(SHARED_DATA.parent / "brain_tumor_mri")


@pytest.fixture(scope="module")
def loader(data_root):
    return TaskLoader()


def test_grammar_parses_indices_ranges_names_and_simulation():
    assert parse_task("retinamnist").groups is None
    assert parse_task("retinamnist:0v4").groups == (("0",), ("4",))
    assert parse_task("retinamnist:0v1-4").groups == (("0",), ("1-4",))
    assert parse_task("RetinaMNIST:0-1v2+3").groups == (("0-1",), ("2", "3"))
    assert parse_task("RetinaMNIST:0v4").source == "retinamnist"
    spec = parse_task("brain:glioma+meningioma+pituitary_v_notumor")
    assert spec.source == "brain" and spec.groups == (("glioma", "meningioma", "pituitary"), ("notumor",))
    sim = parse_task("simulation:breastmnist_v_retinamnist_v_brain")
    assert sim.is_simulation and sim.members == ("breastmnist", "retinamnist", "brain")
    assert parse_task("/data/my:folder:a_v_b").source == "/data/my:folder"
    for bad in ("retinamnist:0", "retinamnist:0v", "brain:glioma", "simulation:breastmnist", ""):
        with pytest.raises(DataError):
            parse_task(bad)


def test_source_keys_group_tasks_by_where_their_images_come_from():
    assert task_source("retinamnist:0v4") == task_source("retinamnist") == "retinamnist"
    assert task_source("brain:glioma_v_notumor") == "brain"
    assert task_source("simulation:breastmnist_v_retinamnist_v_brain") == "brain+breastmnist+retinamnist"
    assert task_source("/somewhere/my_scans:a_v_b") == "my_scans"
    assert task_source(BRAIN) == task_source(BRAIN + ":glioma_v_notumor") == "brain"  # the alias's folder by path
    assert task_name("retinamnist:0v1+2+3+4") == "retinamnist:0v1-4"
    assert task_name("simulation:breastmnist_v_brain") == "simulation:breastmnist_v_brain"


def test_retinamnist_grade_tasks_keep_their_splits_and_relabel(loader):
    source = loader.load("retinamnist")
    task = loader.load("retinamnist:0v4")
    assert task.name == "retinamnist:0v4" and task.class_names == ["0", "4"] and task.task == "binary-class"
    for split, counts in {"train": [486, 66], "val": [54, 6], "test": [174, 20]}.items():
        assert task.class_counts(split) == counts
    # label 1 of the task is grade 4 of the source, image for image (pixels, before normalisation)
    mine = task.denormalize(task.train_images[task.train_labels == 1])
    theirs = source.denormalize(source.train_images[source.train_labels == 4])
    assert torch.allclose(mine, theirs, atol=1e-5)
    # renormalised with the task's own train statistics
    flat = task.train_images.transpose(0, 1).reshape(3, -1)
    assert torch.allclose(flat.mean(1), torch.zeros(3), atol=1e-4)
    assert torch.allclose(flat.std(1), torch.ones(3), atol=1e-3)
    merged = loader.load("retinamnist:0v1+2+3+4")
    assert merged.name == "retinamnist:0v1-4" and merged.class_names == ["0", "1-4"]
    assert merged.class_counts("train") == [486, 128 + 206 + 194 + 66]
    assert merged.md5 == loader.load("retinamnist:0v1-4").md5
    three = loader.load("retinamnist:0v2v4")
    assert three.num_classes == 3 and three.task == "ordinal-regression"
    assert loader.load("retinamnist:0v1v2v3v4") is source  # every class in order: the source itself


def test_brain_tasks_from_the_real_image_folder(loader):
    brain = loader.load("brain")
    assert brain.name == "brain" and brain.class_names == ["glioma", "meningioma", "notumor", "pituitary"]
    pair = loader.load("brain:glioma_v_meningioma")
    assert pair.class_counts("train") == [1321, 1339] and pair.class_counts("test") == [300, 306]
    assert pair.class_counts("val") == [0, 0] and pair.channels == 1
    tumour = loader.load("brain:notumor_v_glioma+meningioma+pituitary")
    assert tumour.class_names == ["notumor", "glioma+meningioma+pituitary"]
    assert tumour.class_counts("train") == [1591, 1321 + 1339 + 1457]
    assert tumour.class_counts("test") == [405, 300 + 306 + 300]
    by_index = loader.load("brain:2v0+1+3")
    assert by_index.name == tumour.name and by_index.md5 == tumour.md5
    prov = tumour.provenance
    assert prov["kind"] == "task" and prov["source"] == "brain" and prov["source_md5"] == brain.md5
    assert prov["groups"][1]["source_class_names"] == ["glioma", "meningioma", "pituitary"]
    assert prov["source_provenance"]["content_md5"] == brain.provenance["content_md5"]
    assert any("task brain:notumor_v_glioma+meningioma+pituitary" in n for n in tumour.notices)


def test_every_task_has_its_own_fingerprint(loader):
    names = ["retinamnist", "retinamnist:0v4", "retinamnist:4v0", "retinamnist:0v1", "retinamnist:0v1-4",
             "brain", "brain:glioma_v_meningioma", "brain:meningioma_v_glioma", "brain:glioma_v_pituitary",
             "breastmnist", "breastmnist:1v0", "simulation:breastmnist_v_retinamnist_v_brain",
             "simulation:retinamnist_v_breastmnist_v_brain"]
    md5s = [loader.load(n).md5 for n in names]
    assert len(set(md5s)) == len(names)


def test_simulation_task_from_three_sources(loader):
    sim = loader.load("simulation:breastmnist_v_retinamnist_v_brain")
    assert sim.class_names == ["breastmnist", "retinamnist", "brain"] and sim.channels == 3
    assert sim.class_counts("train") == [300, 300, 300] and sim.class_counts("test") == [150, 150, 150]
    assert sim.class_counts("val") == [50, 50, 0]  # the brain folder has no val split
    grey = sim.denormalize(sim.train_images[sim.train_labels == 2])
    assert torch.allclose(grey[:, 0], grey[:, 1], atol=1e-5)  # grey repeated into three channels
    again = TaskLoader().load("simulation:breastmnist_v_retinamnist_v_brain")
    assert torch.equal(again.train_images, sim.train_images) and again.md5 == sim.md5
    assert sim.provenance["source"] == "brain+breastmnist+retinamnist"


def test_clear_errors(loader, monkeypatch, tmp_path):
    with pytest.raises(DataError, match="no class 'astrocytoma'"):
        loader.load("brain:glioma_v_astrocytoma")
    with pytest.raises(DataError, match="in groups 1 and 2"):
        loader.load("retinamnist:0-2v2-4")
    with pytest.raises(DataError, match="no class '7'"):
        loader.load("retinamnist:0v7")
    monkeypatch.setenv("MEDISTILL_BRAIN_MRI", str(tmp_path / "missing"))
    with pytest.raises(DataError, match="MEDISTILL_BRAIN_MRI"):
        TaskLoader().load("brain:glioma_v_notumor")
