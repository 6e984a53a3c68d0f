"""MedMNIST+ sizes (64, 128, 224 px) on generated files in MedMNIST's layout: found under the names medmnist
uses, held as uint8 and normalised per batch to the numbers a float copy gives, a ConvNet whose depth follows
the size, ZCA refused where its matrix is too large, and DM/DC runs and baselines end to end at small N."""
import json

import numpy as np
import pytest
import torch

from benchmarks.medmnist_layout import write_medmnist_layout
from medistill.cli import main
from medistill.data import DataError, SplitImages, fit_zca, load_medmnist, locate
from medistill.data.normalize import channel_stats, normalize, to_float_nchw
from medistill.data.zca import MAX_DIM, ZCA, check_zca_size
from medistill.methods import distill, make_config

SIZES = (64, 128, 224)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """pathmnist (3 channels, 9 classes) and breastmnist (1 channel, 2 classes) at 64/128/224 px, small N."""
    folder = tmp_path_factory.mktemp("medmnist_sizes")
    for size in SIZES:
        write_medmnist_layout(folder, "pathmnist", size, (27, 9, 18), seed=size)
        write_medmnist_layout(folder, "breastmnist", size, (12, 4, 8), seed=size + 1)
    return folder


def _float_path(path):
    """What the loader held before: every split as a float copy, normalised with the train statistics."""
    with np.load(path) as npz:
        floats = {s: to_float_nchw(npz[f"{s}_images"]) for s in ("train", "val", "test")}
    mean, std = channel_stats(floats["train"])
    return {s: normalize(x, mean, std) for s, x in floats.items()}, mean, std


@pytest.mark.parametrize("size", SIZES)
def test_size_files_are_found_by_medmnist_name(root, size):
    assert locate("pathmnist", size, root) == root / f"pathmnist_{size}.npz"
    with pytest.raises(DataError, match="differs from the official"):
        load_medmnist("pathmnist", size=size, root=root)  # generated, so not the official MD5


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", ["pathmnist", "breastmnist"])
def test_uint8_storage_gives_the_float_numbers(root, name, size):
    d = load_medmnist(name, size=size, root=root, verify_md5=False)
    channels = 3 if name == "pathmnist" else 1
    assert d.image_shape == (channels, size, size) and d.image_size == size and d.channels == channels
    # uint8 in memory: one byte a pixel, nothing else
    n = sum(d.split_sizes.values())
    assert d.memory_bytes == n * channels * size * size
    assert all(d.images(s).is_pixels and d.images(s).data.dtype == torch.uint8 for s in ("train", "val", "test"))
    reference, mean, std = _float_path(root / (f"{name}_{size}.npz"))
    assert torch.equal(d.mean, mean) and torch.equal(d.std, std)
    for split in ("train", "val", "test"):
        images = d.images(split)
        assert images.shape == reference[split].shape and len(images) == len(reference[split])
        whole = getattr(d, f"{split}_images")
        assert whole.dtype == torch.float32 and whole.is_contiguous() and torch.equal(whole, reference[split])
    idx = torch.tensor([5, 0, 3, 3])
    batch = d.batch("train", idx)
    assert batch.is_contiguous() and torch.equal(batch, reference["train"][idx])
    assert torch.equal(d.images("train")[2], reference["train"][2])
    assert torch.equal(d.images("train")[-1], reference["train"][-1])
    assert torch.equal(d.images("test")[1:4], reference["test"][1:4])
    assert torch.equal(torch.cat(list(d.images("val").batches(3))), reference["val"])
    assert torch.equal(d.images("train")[np.array([1, 2])], reference["train"][[1, 2]])


def test_float_storage_is_served_as_is():
    x = torch.randn(5, 2, 8, 8)
    split = SplitImages(x)
    assert not split.is_pixels and split.materialize() is x and torch.equal(split[[4, 1]], x[[4, 1]])
    assert split.to("cpu") is split and split.shape == (5, 2, 8, 8)
    with pytest.raises(ValueError, match="mean and std"):
        SplitImages(torch.zeros(3, 4, 4, dtype=torch.uint8))


def test_image_size_is_checked_against_the_file_name(tmp_path):
    path = write_medmnist_layout(tmp_path, "breastmnist", 64, (4, 2, 2))
    path.rename(tmp_path / "breastmnist_128.npz")
    with pytest.raises(DataError, match="expected 128×128"):
        load_medmnist("breastmnist", size=128, root=tmp_path, verify_md5=False)


@pytest.mark.parametrize("size,depth,features", [(28, 3, 2048), (32, 3, 2048), (64, 4, 2048), (128, 5, 2048),
                                                 (224, 5, 6272)])
def test_convnet_depth_follows_the_image_size(size, depth, features):
    from medistill.models import build_model

    net = build_model("convnet", 3, 9, size)
    assert net.depth == depth and net.feature_dim == features
    assert net.features[0].padding == ((3, 3) if size == 28 else (1, 1))  # the 28 px pad-3 rule


@pytest.mark.parametrize("size", SIZES)
def test_zca_is_refused_over_its_limit(root, size):
    d = load_medmnist("pathmnist", size=size, root=root, verify_md5=False)  # 3×S×S > 4,096 at every MedMNIST+ size
    with pytest.raises(DataError, match=r"ZCA whitening needs a dense D×D matrix.*4,096"):
        fit_zca(d)
    with pytest.raises(DataError, match="at most|only up"):
        ZCA.fit(d.batch("train", [0, 1, 2]))
    grey = load_medmnist("breastmnist", size=size, root=root, verify_md5=False)
    if size * size <= MAX_DIM:  # 1×64×64 is exactly at the limit (its fit takes a minute: not run here)
        check_zca_size(grey.image_shape)
    else:
        with pytest.raises(DataError, match=f"1×{size}×{size} = {size * size:,}"):
            fit_zca(grey)


@pytest.mark.parametrize("size", SIZES)
def test_dm_and_dc_distil_at_every_size(root, size, tmp_path):
    torch.set_num_threads(1)
    d = load_medmnist("breastmnist", size=size, root=root, verify_md5=False)
    for method in ("dm", "dc"):
        config = make_config(method, 1, "quick", iterations=1, batch_real=4)
        result = distill(d, method, config, tmp_path / method, progress=False)
        synthetic = torch.load(tmp_path / method / "synthetic_set.pt", weights_only=True)
        assert synthetic["images"].shape == (2, 1, size, size) and torch.isfinite(synthetic["images"]).all()
        assert result.metrics is None


def test_distil_and_baselines_at_224_through_the_cli(root, tmp_path, capsys):
    common = ["--dataset", "pathmnist", "--size", "224", "--data-root", str(root), "--allow-md5-mismatch",
              "--threads", "1"]
    run = tmp_path / "run"
    assert main(["distill", *common, "--method", "dm", "--ipc", "1", "--preset", "quick", "--iterations", "1",
                 "--set", "batch_real=2", "--eval-models", "1", "--eval-epochs", "1", "--random-subsets", "1",
                 "--out", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["distilled"]["test_size"] == 18 and 0 <= metrics["distilled"]["summary"]["accuracy"]["mean"] <= 1
    result = tmp_path / "full.json"
    assert main(["baseline", *common, "--selector", "full", "--models", "1", "--epochs", "1", "--json", str(result)]) == 0
    assert json.loads(result.read_text())["images"] == 27
    assert "pathmnist" in capsys.readouterr().out


def test_info_lists_every_size(root, capsys):
    assert main(["info", "--data-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "pathmnist        found  64, 128, 224 px in" in out and "chestmnist       missing" in out
