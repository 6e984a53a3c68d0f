"""medistill export / evaluate PACKAGE: layout, exact floats, metadata, manifest, and clear errors (real BreastMNIST)."""
import json
import subprocess

import numpy as np
import pytest
import torch

from medistill.cli import main
from medistill.data import DataError, ImageSet
from medistill.evaluate import EvalConfig
from medistill.export import ManifestError, export_package, load_package, verify_manifest
from medistill.export.package_evaluate import evaluate_package
from medistill.selection import select

LEARNED_LR = 0.005


def _synthetic(breast, shift=0.7) -> ImageSet:
    """A 'distilled' set: 2 real images per class pushed so some pixels leave [0, 1]."""
    base = select(breast, "random", 2, seed=1)
    images = base.images + shift * torch.randn(base.images.shape, generator=torch.Generator().manual_seed(0))
    meta = {"dataset": "breastmnist", "dataset_md5": breast.md5, "method": "mtt", "ipc": 2, "seed": 3,
            "hyperparameters": {"lr_img": 100.0, "syn_steps": 5, "dsa_strategy": "color_crop_cutout_flip_scale_rotate"},
            "learned_lr": LEARNED_LR, "evaluate_with_dsa": False, "task": breast.task}
    return ImageSet(images, base.labels, breast.mean, breast.std, breast.class_names, meta)


def _run_folder(tmp_path, image_set: ImageSet):
    run = tmp_path / "breastmnist-mtt-ipc2-test"
    image_set.save(run / "synthetic_set.pt")
    (run / "config.json").write_text(json.dumps({"method": "mtt", "dataset": "breastmnist", "ipc": 2, "seed": 3}))
    summary = {k: {"mean": 0.7, "std": 0.01, "values": [0.7]} for k in ("accuracy", "balanced_accuracy", "auc")}
    distilled = {"summary": summary, "majority_rate": 0.731, "test_size": 156,
                 "config": {"model": "convnet", "num_models": 1, "epochs": 2, "lr": LEARNED_LR, "seed": 0, "augment": False}}
    (run / "metrics.json").write_text(json.dumps({"distilled": distilled, "random": distilled, "majority_rate": 0.731,
                                                  "learned_lr": LEARNED_LR, "evaluated_with_dsa": False}))
    return run


@pytest.fixture()
def package(tmp_path, breast):
    image_set = _synthetic(breast)
    return image_set, export_package(_run_folder(tmp_path, image_set), tmp_path / "pkg")


def test_round_trip_layout_floats_metadata_manifest(package, breast):
    image_set, pkg = package
    files = sorted(p.name for p in pkg.iterdir())
    assert files == ["MANIFEST.sha256", "README.md", "breastmnist.npz", "metadata.json", "synthetic_grid.png"]
    with np.load(pkg / "breastmnist.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    # MedMNIST's own keys and dtypes, as in the real file.
    assert arrays["train_images"].dtype == np.uint8 and arrays["train_images"].shape == (4, 28, 28)
    assert arrays["train_labels"].dtype == np.uint8 and arrays["train_labels"].shape == (4, 1)
    assert arrays["train_labels"][:, 0].tolist() == image_set.labels.tolist()
    assert arrays["val_images"].shape == (0, 28, 28) and arrays["test_labels"].shape == (0, 1)
    # Exact floats: the distilled tensor bit for bit, and its de-normalised pixels (not clipped).
    pixels = (image_set.images * image_set.std.view(1, -1, 1, 1) + image_set.mean.view(1, -1, 1, 1))[:, 0].numpy()
    assert np.array_equal(arrays["train_images_normalized"], image_set.images.numpy())
    assert np.array_equal(arrays["train_images_float"], pixels)
    assert pixels.min() < 0 or pixels.max() > 1  # the case the float key exists for
    assert np.array_equal(arrays["train_images"], np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8))
    meta = json.loads((pkg / "metadata.json").read_text())
    assert meta["source_dataset"]["name"] == "breastmnist" and meta["source_dataset"]["md5"] == breast.md5
    assert (meta["method"], meta["ipc"], meta["seed"], meta["learned_lr"]) == ("mtt", 2, 3, LEARNED_LR)
    assert meta["hyperparameters"]["syn_steps"] == 5 and meta["class_names"] == breast.class_names
    assert meta["normalization"]["mean"] == pytest.approx(breast.mean.tolist())
    assert meta["evaluation"]["distilled"]["summary"]["accuracy"]["mean"] == 0.7
    assert {"medistill", "torch", "python"} <= set(meta["versions_at_export"])
    assert 0 < meta["images"]["clipped_fraction"] < 1
    # Manifest: ours verifies, and it is sha256sum's format.
    assert set(verify_manifest(pkg)) == {"README.md", "breastmnist.npz", "metadata.json", "synthetic_grid.png"}
    check = subprocess.run(["sha256sum", "-c", "MANIFEST.sha256"], cwd=pkg, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    loaded = load_package(pkg).image_set
    assert torch.equal(loaded.images, image_set.images) and torch.equal(loaded.labels, image_set.labels)
    assert loaded.learned_lr == LEARNED_LR
    assert "breastmnist" in (pkg / "README.md").read_text() and "sha256sum -c" in (pkg / "README.md").read_text()


def test_medmnist_reads_the_package(package):
    medmnist = pytest.importorskip("medmnist")
    _, pkg = package
    train = medmnist.BreastMNIST(split="train", root=str(pkg))
    assert train.imgs.shape == (4, 28, 28) and train.labels.shape == (4, 1)


def test_bare_pt_exports_and_existing_out_is_refused(tmp_path, breast, capsys):
    path = _synthetic(breast).save(tmp_path / "set.pt")
    assert main(["export", str(path), "--out", str(tmp_path / "p")]) == 0
    assert "exported 4 images" in capsys.readouterr().out
    assert load_package(tmp_path / "p").metadata["evaluation"] is None
    assert main(["export", str(path), "--out", str(tmp_path / "p")]) == 2
    assert "already exists" in capsys.readouterr().err
    export_package(path, tmp_path / "p", force=True)
    assert main(["export", str(tmp_path / "nothing-here"), "--out", str(tmp_path / "q")]) == 2
    assert "no run folder or image set" in capsys.readouterr().err


@pytest.mark.parametrize("victim", ["metadata.json", "breastmnist.npz", "README.md"])
def test_tampered_file_is_named(package, victim):
    _, pkg = package
    with open(pkg / victim, "ab") as f:
        f.write(b"\n")
    with pytest.raises(ManifestError, match=f"'{victim}' does not match"):
        load_package(pkg)


def test_tampered_package_via_cli(package, data_root, capsys):
    _, pkg = package
    data = bytearray((pkg / "synthetic_grid.png").read_bytes())
    data[-20] ^= 0xFF
    (pkg / "synthetic_grid.png").write_bytes(bytes(data))
    assert main(["evaluate", str(pkg), "--data-root", str(data_root), "--models", "1", "--epochs", "1"]) == 2
    assert "synthetic_grid.png" in capsys.readouterr().err


def test_missing_and_added_files(package):
    _, pkg = package
    (pkg / "extra.txt").write_text("hi")
    with pytest.raises(ManifestError, match="extra.txt"):
        load_package(pkg)
    (pkg / "extra.txt").unlink()
    (pkg / "breastmnist.npz").unlink()
    with pytest.raises(ManifestError, match="'breastmnist.npz' is listed .* but missing"):
        load_package(pkg)
    (pkg / "MANIFEST.sha256").unlink()
    with pytest.raises(ManifestError, match="missing MANIFEST.sha256"):
        load_package(pkg)


def test_shape_mismatch_is_a_clear_error(tmp_path, breast, data_root, capsys):
    wrong = ImageSet(torch.randn(4, 1, 32, 32), torch.tensor([0, 0, 1, 1]), breast.mean, breast.std,
                     breast.class_names, {"dataset": "breastmnist", "dataset_md5": breast.md5, "method": "dm", "ipc": 2})
    pkg = export_package(wrong.save(tmp_path / "wrong.pt"), tmp_path / "pkg")
    with pytest.raises(DataError, match=r"\(1, 32, 32\).*\(1, 28, 28\)"):
        evaluate_package(load_package(pkg), breast, EvalConfig(num_models=1, epochs=1), progress=False)
    assert main(["evaluate", str(pkg), "--data-root", str(data_root), "--models", "1", "--epochs", "1"]) == 2
    assert "images are (1, 32, 32)" in capsys.readouterr().err


def test_evaluate_package_uses_learned_lr_and_reproduces_the_set(package, breast, data_root, tmp_path):
    image_set, pkg = package
    out = tmp_path / "score.json"
    assert main(["evaluate", str(pkg), "--data-root", str(data_root), "--models", "1", "--epochs", "3",
                 "--json", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["config"]["lr"] == LEARNED_LR and payload["config"]["epochs"] == 3
    # The same protocol on the original set gives the same numbers: the package carries the exact tensor.
    from medistill.evaluate import evaluate_images

    direct = evaluate_images(image_set.images, image_set.labels, breast.test_images, breast.test_labels, 2, breast.task,
                             EvalConfig(num_models=1, epochs=3, lr=LEARNED_LR), progress=False)
    assert payload["summary"]["accuracy"]["values"] == direct.summary["accuracy"]["values"]
