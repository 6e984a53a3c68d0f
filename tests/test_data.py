"""Loading real MedMNIST files, user image folders, and every bad-input path of the data layer."""
import shutil

import numpy as np
import pytest
import torch

from medistill.data import DataError, load_dataset, load_image_folder, load_medmnist


def test_breastmnist_real_file(data_root):
    d = load_medmnist("breastmnist", root=data_root)
    assert d.split_sizes == {"train": 546, "val": 78, "test": 156}
    assert d.train_images.shape == (546, 1, 28, 28) and d.train_images.dtype == torch.float32
    assert d.class_counts("train") == [147, 399] and d.class_counts("test") == [42, 114]
    assert d.class_names == ["malignant", "normal, benign"]
    assert d.md5 == "750601b1f35ba3300ea97c75c52ff8f6"
    # Normalised with the train split's own statistics.
    assert abs(float(d.train_images.mean())) < 1e-4 and abs(float(d.train_images.std()) - 1) < 1e-3
    pixels = d.denormalize(d.train_images)
    assert float(pixels.min()) >= -1e-5 and float(pixels.max()) <= 1 + 1e-5


def test_retinamnist_real_file_three_channels(data_root):
    d = load_dataset("RetinaMNIST", root=data_root)
    assert d.train_images.shape == (1080, 3, 28, 28)
    assert d.class_counts("train") == [486, 128, 206, 194, 66]
    assert d.task == "ordinal-regression" and d.num_classes == 5
    assert d.mean.shape == (3,) and d.std.shape == (3,)


def test_root_from_environment(data_root, monkeypatch):
    monkeypatch.setenv("MEDISTILL_DATA", str(data_root))
    assert load_medmnist("breastmnist").source.startswith(str(data_root))


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(DataError, match="valid names: .*breastmnist"):
        load_medmnist("notamnist")


def test_chestmnist_is_loadable_not_refused(tmp_path):
    # multi-label data is supported (tests/test_multilabel.py): a missing file is only missing
    with pytest.raises(DataError, match="MedMNIST file not found") as err:
        load_medmnist("chestmnist", root=tmp_path)
    assert "multi-label" not in str(err.value)


@pytest.mark.parametrize("name", ["breastmnist", "retinamnist"])
def test_uint8_storage_gives_the_numbers_of_a_float_copy(data_root, name):
    """Images stay uint8 and are normalised per batch: the same bits as normalising a float copy of the split."""
    from medistill.data.normalize import channel_stats, normalize, to_float_nchw

    d = load_medmnist(name, root=data_root)
    with np.load(data_root / f"{name}.npz") as npz:
        floats = {s: to_float_nchw(npz[f"{s}_images"]) for s in ("train", "val", "test")}
    mean, std = channel_stats(floats["train"])
    assert torch.equal(d.mean, mean) and torch.equal(d.std, std)
    assert d.memory_bytes == sum(x.numel() for x in floats.values())  # one byte a pixel
    for split, x in floats.items():
        assert torch.equal(getattr(d, f"{split}_images"), normalize(x, mean, std))
    idx = torch.randperm(len(floats["train"]), generator=torch.Generator().manual_seed(0))[:37]
    assert torch.equal(d.batch("train", idx), normalize(floats["train"], mean, std)[idx])


def test_unknown_size():
    with pytest.raises(DataError, match="valid sizes"):
        load_medmnist("breastmnist", size=30)


def test_missing_file_names_path_and_md5(tmp_path):
    with pytest.raises(DataError) as err:
        load_medmnist("pathmnist", root=tmp_path)
    message = str(err.value)
    assert str(tmp_path / "pathmnist.npz") in message
    assert "MD5" in message and "MEDISTILL_DATA" in message


def test_md5_mismatch_is_refused_unless_allowed(data_root, tmp_path):
    copy = tmp_path / "breastmnist.npz"
    with np.load(data_root / "breastmnist.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    np.savez(copy, **arrays)  # same content, different bytes → different MD5
    with pytest.raises(DataError, match="differs from the official"):
        load_medmnist("breastmnist", root=tmp_path)
    assert load_medmnist("breastmnist", root=tmp_path, verify_md5=False).split_sizes["train"] == 546


def _write(tmp_path, **arrays):
    np.savez(tmp_path / "breastmnist.npz", **arrays)
    return tmp_path


def _good_arrays(n=6):
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = np.random.randint(0, 255, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = np.array([[0], [1]] * (n // 2), dtype=np.uint8)
    return arrays


def test_truncated_file(data_root, tmp_path):
    raw = (data_root / "breastmnist.npz").read_bytes()
    (tmp_path / "breastmnist.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="not a readable .npz"):
        load_medmnist("breastmnist", root=tmp_path, verify_md5=False)


def test_not_an_npz(tmp_path):
    (tmp_path / "breastmnist.npz").write_text("hello")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_medmnist("breastmnist", root=tmp_path, verify_md5=False)


def test_wrong_keys(tmp_path):
    arrays = _good_arrays()
    del arrays["val_labels"]
    with pytest.raises(DataError, match="missing key 'val_labels'"):
        load_medmnist("breastmnist", root=_write(tmp_path, **arrays), verify_md5=False)


def test_wrong_dtype(tmp_path):
    arrays = _good_arrays()
    arrays["train_images"] = arrays["train_images"].astype(np.float32)
    with pytest.raises(DataError, match="must be uint8"):
        load_medmnist("breastmnist", root=_write(tmp_path, **arrays), verify_md5=False)


def test_wrong_shape(tmp_path):
    arrays = _good_arrays()
    arrays["test_images"] = np.zeros((6, 28, 28, 3), np.uint8)
    with pytest.raises(DataError, match="expected 1 channel"):
        load_medmnist("breastmnist", root=_write(tmp_path, **arrays), verify_md5=False)
    arrays = _good_arrays()
    arrays["train_labels"] = arrays["train_labels"][:4]
    with pytest.raises(DataError, match="does not match 6 images"):
        load_medmnist("breastmnist", root=_write(tmp_path, **arrays), verify_md5=False)


def test_labels_out_of_range(tmp_path):
    arrays = _good_arrays()
    arrays["val_labels"][0, 0] = 7
    with pytest.raises(DataError, match="out of range"):
        load_medmnist("breastmnist", root=_write(tmp_path, **arrays), verify_md5=False)


def _make_folder(root, classes=("benign", "tumour"), per_class=5, mode="L"):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            shape = (40, 36) if mode == "L" else (40, 36, 3)
            Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode=mode).save(root / c / f"{i}.png")
    return root


def test_image_folder_random_split(tmp_path):
    d = load_image_folder(_make_folder(tmp_path / "scans", per_class=10), size=28, channels=1,
                          val_fraction=0.1, test_fraction=0.2)
    assert d.class_names == ["benign", "tumour"]
    assert sum(d.split_sizes.values()) == 20 and d.split_sizes["test"] == 4
    assert d.train_images.shape[1:] == (1, 28, 28)


def test_image_folder_with_split_folders(tmp_path):
    _make_folder(tmp_path / "ds" / "train", mode="RGB")
    _make_folder(tmp_path / "ds" / "test", per_class=2, mode="RGB")
    d = load_dataset(str(tmp_path / "ds"), size=32, channels=3)
    assert d.split_sizes == {"train": 10, "val": 0, "test": 4}
    assert d.train_images.shape == (10, 3, 32, 32)


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_image_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        load_image_folder(tmp_path / "empty")
    root = _make_folder(tmp_path / "bad")
    (root / "benign" / "broken.png").write_text("not an image")
    with pytest.raises(DataError, match="unreadable image file"):
        load_image_folder(root)
    shutil.rmtree(root / "tumour")
    (root / "tumour").mkdir()
    with pytest.raises(DataError, match="no images"):
        load_image_folder(root)
