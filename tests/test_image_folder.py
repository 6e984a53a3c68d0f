"""A user's own image folder as it comes: split folder names, colour, sizes, damaged files, provenance.

Every folder here is generated with PIL in a tmp dir (PNG and JPEG; grey, RGB, grey stored as RGB,
non-square), so the cases are small and exact.
"""
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medistill.data import DataError, load_dataset, load_image_folder


def _grey(rng, w, h):
    return rng.integers(0, 256, (h, w), dtype=np.uint8)


def _image(kind, rng, w=40, h=40):
    if kind == "grey":
        return Image.fromarray(_grey(rng, w, h), mode="L")
    if kind == "grey_rgb":  # a grey scan saved as RGB: three equal channels
        return Image.fromarray(np.repeat(_grey(rng, w, h)[..., None], 3, -1), mode="RGB")
    if kind == "rgb":
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), mode="RGB")
    raise ValueError(kind)


def make_folder(root, classes=("benign", "tumour"), per_class=6, kind="grey", ext="png", size=(40, 40), seed=0):
    """root/<class>/<i>.<ext>; ``kind`` and ``size`` may be a list, cycled over the images."""
    rng = np.random.default_rng(seed)
    kinds = kind if isinstance(kind, list) else [kind]
    sizes = size if isinstance(size, list) else [size]
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            w, h = sizes[i % len(sizes)]
            _image(kinds[i % len(kinds)], rng, w, h).save(root / c / f"{i:03d}.{ext}")
    return root


def pixels(d, split="train"):
    """The dataset's images back as 0..255 values."""
    return (d.denormalize(getattr(d, f"{split}_images")) * 255).round().numpy()


# --- split folders -------------------------------------------------------------------------------------


def test_training_testing_folders_are_splits_not_classes(tmp_path, capsys):
    make_folder(tmp_path / "mri" / "Training", per_class=5, kind=["grey", "grey_rgb"], ext="jpg")
    make_folder(tmp_path / "mri" / "Testing", per_class=2, kind="grey", ext="jpg")
    d = load_dataset(str(tmp_path / "mri"))
    assert d.class_names == ["benign", "tumour"]
    assert d.split_sizes == {"train": 10, "val": 0, "test": 4}
    assert d.notices[0] == "split: train = Training/ (10 images), test = Testing/ (4 images); no val split"
    assert capsys.readouterr().out == ""  # the data layer never prints


@pytest.mark.parametrize("names", [("train", "test"), ("TRAIN", "Test"), ("training", "testing"),
                                   ("Train", "Valid", "test"), ("train", "validation", "TESTING")])
def test_usual_split_names_any_case(tmp_path, names):
    for name, n in zip(names, (4, 2, 3)):
        make_folder(tmp_path / "ds" / name, per_class=n)
    d = load_image_folder(tmp_path / "ds")
    expected = {"train": 8, "val": 4 if len(names) == 3 else 0, "test": 6 if len(names) == 3 else 4}
    assert d.split_sizes == expected


def test_explicit_split_dirs_mapping(tmp_path):
    make_folder(tmp_path / "ds" / "fit_on", per_class=4)
    make_folder(tmp_path / "ds" / "holdout", per_class=2)
    make_folder(tmp_path / "ds" / "Testing", per_class=3)  # present, but the mapping decides
    d = load_image_folder(tmp_path / "ds", split_dirs="train=fit_on,test=holdout")
    assert d.split_sizes == {"train": 8, "val": 0, "test": 4}
    assert d.provenance["splits"] == {"train": "fit_on", "test": "holdout"}
    assert load_image_folder(tmp_path / "ds", split_dirs={"train": "fit_on", "test": "Testing"}).split_sizes["test"] == 6
    with pytest.raises(DataError, match="does not exist"):
        load_image_folder(tmp_path / "ds", split_dirs="train=fit_on,test=nope")
    with pytest.raises(DataError, match="name the train split"):
        load_image_folder(tmp_path / "ds", split_dirs="test=holdout")
    with pytest.raises(DataError, match="unknown split"):
        load_image_folder(tmp_path / "ds", split_dirs="train=fit_on,eval=holdout")
    with pytest.raises(DataError, match="SPLIT=FOLDER"):
        load_image_folder(tmp_path / "ds", split_dirs="fit_on")


def test_no_test_split_is_held_out_stratified_and_seeded(tmp_path):
    make_folder(tmp_path / "ds" / "train", classes=("a", "b", "c"), per_class=10)
    d = load_image_folder(tmp_path / "ds")
    assert d.split_sizes == {"train": 24, "val": 0, "test": 6}
    assert d.class_counts("test") == [2, 2, 2] and d.class_counts("train") == [8, 8, 8]
    assert d.notices[0].startswith("split: no test split folder, so 20% as the test split were held out of each class")
    assert "split seed 0" in d.notices[0] and "24 train, 6 test images" in d.notices[0]
    again = load_image_folder(tmp_path / "ds")
    assert (again.test_images == d.test_images).all()
    other = load_image_folder(tmp_path / "ds", split_seed=1)
    assert not (other.test_images == d.test_images).all() and other.md5 != d.md5
    half = load_image_folder(tmp_path / "ds", test_fraction=0.5)
    assert half.class_counts("test") == [5, 5, 5]
    with pytest.raises(DataError, match="test fraction"):
        load_image_folder(tmp_path / "ds", test_fraction=1.0)


def test_flat_folder_without_split_folders(tmp_path):
    root = make_folder(tmp_path / "scans", per_class=10)
    d = load_image_folder(root, val_fraction=0.1)
    assert d.split_sizes == {"train": 14, "val": 2, "test": 4}
    assert d.notices[0].startswith("split: no split folders, so 20% as the test split and 10% as the val split")


def test_layout_errors_before_any_image_is_read(tmp_path, monkeypatch):
    import medistill.data.image_folder as image_folder

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image was decoded before the layout was checked")

    monkeypatch.setattr(image_folder, "decode", no_decoding)
    make_folder(tmp_path / "one", classes=("only",))
    with pytest.raises(DataError, match="only one class folder .*at least 2 classes"):
        load_image_folder(tmp_path / "one")
    make_folder(tmp_path / "one_split" / "train", classes=("only",))
    with pytest.raises(DataError, match="at least 2 classes"):
        load_image_folder(tmp_path / "one_split")
    make_folder(tmp_path / "tiny", per_class=1)
    with pytest.raises(DataError, match="benign \\(1\\), tumour \\(1\\) have too few images to split"):
        load_image_folder(tmp_path / "tiny")
    make_folder(tmp_path / "empty_test" / "train")
    (tmp_path / "empty_test" / "test").mkdir()
    with pytest.raises(DataError, match="empty_test/test: the split is empty"):
        load_image_folder(tmp_path / "empty_test")
    make_folder(tmp_path / "mismatch" / "train")
    make_folder(tmp_path / "mismatch" / "test", classes=("benign", "other"))
    with pytest.raises(DataError, match="missing \\['tumour'\\]; extra \\['other'\\]"):
        load_image_folder(tmp_path / "mismatch")
    make_folder(tmp_path / "no_train" / "Testing")
    with pytest.raises(DataError, match="Testing/ but no train split"):
        load_image_folder(tmp_path / "no_train")
    make_folder(tmp_path / "twice" / "train")
    make_folder(tmp_path / "twice" / "Training")
    with pytest.raises(DataError, match="both look like the train split"):
        load_image_folder(tmp_path / "twice")
    make_folder(tmp_path / "hollow" / "train")
    shutil.rmtree(tmp_path / "hollow" / "train" / "tumour")
    (tmp_path / "hollow" / "train" / "tumour").mkdir()
    (tmp_path / "hollow" / "train" / "tumour" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="tumour: no images .*1 .txt files"):
        load_image_folder(tmp_path / "hollow")
    with pytest.raises(DataError, match="image folder not found"):
        load_dataset(str(tmp_path / "missing"))


def test_hidden_files_and_non_images_are_left_out(tmp_path):
    root = make_folder(tmp_path / "ds" / "Training")
    make_folder(tmp_path / "ds" / "Testing", per_class=2)
    (root / "benign" / ".ipynb_checkpoints").mkdir()
    _image("grey", np.random.default_rng(1)).save(root / "benign" / ".ipynb_checkpoints" / "000-checkpoint.png")
    (root / "benign" / ".DS_Store").write_bytes(b"\0\1")
    (root / ".cache").mkdir()
    (root / "benign" / "labels.csv").write_text("x")
    (root / "tumour" / "patient7").mkdir()  # images in sub-folders of a class count for the class
    _image("grey", np.random.default_rng(2)).save(root / "tumour" / "patient7" / "a.png")
    d = load_image_folder(tmp_path / "ds")
    assert d.class_names == ["benign", "tumour"] and d.class_counts("train") == [6, 7]
    assert "ignored 1 file(s) that are not images: 1 .csv" in d.notices


# --- channels ------------------------------------------------------------------------------------------


def test_auto_channels_keeps_colour_and_says_so(tmp_path):
    make_folder(tmp_path / "derm" / "train", kind=["rgb", "grey"])
    make_folder(tmp_path / "derm" / "test", per_class=2, kind="rgb")
    d = load_image_folder(tmp_path / "derm")
    assert d.channels == 3
    note = next(n for n in d.notices if n.startswith("channels"))
    assert note.startswith("channels: 3 (auto: 10 of 16 images have colour") and "--channels 1" in note
    # a grey file in a colour set becomes three equal channels
    grey_file = pixels(d)[1]
    assert (grey_file[0] == grey_file[1]).all() and (grey_file[0] == grey_file[2]).all()
    grey = load_image_folder(tmp_path / "derm", channels=1)
    assert grey.channels == 1
    assert any(n.startswith("channels: 1 (as asked): 10 colour image(s) converted to grey") for n in grey.notices)


def test_auto_channels_grey_even_when_stored_as_rgb(tmp_path):
    make_folder(tmp_path / "xray", per_class=10, kind=["grey_rgb", "grey"])
    d = load_image_folder(tmp_path / "xray")
    assert d.channels == 1 and d.train_images.shape[1:] == (1, 28, 28)
    note = next(n for n in d.notices if n.startswith("channels"))
    assert note.startswith("channels: 1 (auto: every image is grey — 10 stored grey, 10 stored as RGB with three equal")
    three = load_image_folder(tmp_path / "xray", channels=3)
    assert three.channels == 3 and any("copies of one another" in n for n in three.notices)
    # the same pixels either way
    assert np.array_equal(pixels(three)[:, 0], pixels(d)[:, 0])


def test_grey_jpeg_stored_as_rgb_counts_as_grey_despite_chroma_noise(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "ds" / c).mkdir(parents=True)
        for i in range(6):
            g = rng.integers(0, 256, (64, 64), dtype=np.uint8)
            g = np.kron(g[::8, ::8], np.ones((8, 8), np.uint8))  # blocks: JPEG-friendly
            rgb = np.repeat(g[..., None], 3, -1)
            rgb[..., 0] = np.clip(rgb[..., 0].astype(int) + 2, 0, 255)  # a faint tint, as some scans have
            Image.fromarray(rgb).save(tmp_path / "ds" / c / f"{i}.jpg", quality=80)
    d = load_image_folder(tmp_path / "ds")
    assert d.channels == 1
    assert any("faint colour" in n for n in d.notices)


def test_channels_argument_is_checked(tmp_path):
    with pytest.raises(DataError, match="channels must be auto, 1 or 3"):
        load_image_folder(make_folder(tmp_path / "ds"), channels=2)


# --- size and resizing ---------------------------------------------------------------------------------


def test_mixed_and_non_square_sizes_are_resized_with_a_notice(tmp_path):
    make_folder(tmp_path / "us", per_class=6, size=[(150, 150), (300, 200), (40, 80)])
    d = load_image_folder(tmp_path / "us")
    assert d.image_size == 28 and d.extra["size"] == 28
    note = next(n for n in d.notices if n.startswith("size"))
    assert note.startswith("size: 12 images of widths 40–300 px and heights 80–200 px resized to 28×28")
    assert "8 not square, aspect ratio up to 2.00, by stretching" in note and "--resize pad" in note
    assert "default 28" in note
    big = load_image_folder(tmp_path / "us", size=64)
    assert big.image_size == 64 and "enlarged" in next(n for n in big.notices if n.startswith("size"))


def test_pad_keeps_the_aspect_ratio_crop_takes_the_centre(tmp_path):
    for c in ("a", "b"):
        (tmp_path / "ds" / c).mkdir(parents=True)
        for i in range(5):
            wide = np.full((30, 60), 255, np.uint8)
            wide[:, :15] = 0  # a black left quarter
            Image.fromarray(wide).save(tmp_path / "ds" / c / f"{i}.png")
    stretched = pixels(load_image_folder(tmp_path / "ds", size=28))[0, 0]
    assert stretched[:, :5].max() == 0 and stretched[:, 9:].min() == 255
    padded = pixels(load_image_folder(tmp_path / "ds", size=28, resize="pad"))[0, 0]
    assert padded[:7].max() == 0 and padded[-7:].max() == 0  # 28 × 14 image centred on black
    assert padded[8:20, 10:].min() == 255
    cropped = load_image_folder(tmp_path / "ds", size=28, resize="crop")
    assert pixels(cropped)[0, 0].min() == 255  # the centred 30 × 30 square is all white
    assert any("--resize crop" in n for n in cropped.notices)
    with pytest.raises(DataError, match="resize must be one of"):
        load_image_folder(tmp_path / "ds", resize="squash")


def test_images_already_at_size_are_not_resized(tmp_path):
    d = load_image_folder(make_folder(tmp_path / "ds", size=(28, 28)))
    assert "size: every image is already 28×28 px; not resized" in d.notices


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    for c in ("a", "b"):
        (tmp_path / "ds" / c).mkdir(parents=True)
        for i in range(5):
            ramp = np.tile(np.linspace(0, 4095, 28).astype(np.uint16), (28, 1))  # 12-bit data in 16-bit
            Image.fromarray(ramp).save(tmp_path / "ds" / c / f"{i}.png")
    d = load_image_folder(tmp_path / "ds")
    row = pixels(d)[0, 0, 0]
    assert row[0] == 0 and row[-1] == 255 and len(np.unique(row)) == 28
    assert any("16-bit or float pixels" in n for n in d.notices)


# --- unreadable files ----------------------------------------------------------------------------------


def test_unreadable_files_are_named_or_skipped_and_counted(tmp_path):
    root = make_folder(tmp_path / "ds", per_class=6)
    (root / "benign" / "broken.png").write_text("not an image")
    good = (root / "tumour" / "000.png").read_bytes()
    (root / "tumour" / "truncated.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError) as err:
        load_image_folder(root)
    message = str(err.value)
    assert "2 unreadable image file(s)" in message and "broken.png" in message and "truncated.png" in message
    assert "--skip-unreadable" in message
    d = load_image_folder(root, skip_unreadable=True)
    assert sum(d.split_sizes.values()) == 12
    note = next(n for n in d.notices if n.startswith("skipped"))
    assert note.startswith("skipped 2 unreadable file(s) (--skip-unreadable): benign/broken.png")
    assert d.provenance["skipped"] == ["benign/broken.png", "tumour/truncated.png"]
    assert d.provenance["files"] == 14


def test_a_class_left_empty_by_skipping_is_an_error(tmp_path):
    root = make_folder(tmp_path / "ds" / "train")
    make_folder(tmp_path / "ds" / "test", per_class=1)
    (root.parent / "test" / "tumour" / "000.png").write_text("broken")
    with pytest.raises(DataError, match="tumour have no readable image left"):
        load_image_folder(tmp_path / "ds", skip_unreadable=True)


# --- provenance ----------------------------------------------------------------------------------------


def test_provenance_content_hash_and_fingerprint(tmp_path):
    root = make_folder(tmp_path / "ds", per_class=4)
    d = load_image_folder(root)
    p = d.provenance
    files = sorted(f.relative_to(root).as_posix() for f in root.rglob("*.png"))
    lines = "".join(f"{hashlib.md5((root / f).read_bytes()).hexdigest()}  {f}\n" for f in files)
    assert p["content_md5"] == hashlib.md5(lines.encode()).hexdigest()  # = `md5sum` of the files, sorted, hashed
    assert p["kind"] == "image_folder" and p["path"] == str(root.resolve()) and p["files"] == 8
    assert p["bytes"] == sum((root / f).stat().st_size for f in files)
    assert d.md5 == p["fingerprint"] and len(d.md5) == 32
    # the same files elsewhere: same content and fingerprint; another size: same content, new fingerprint
    copy = load_image_folder(shutil.copytree(root, tmp_path / "copy"))
    assert (copy.provenance["content_md5"], copy.md5) == (p["content_md5"], d.md5)
    bigger = load_image_folder(root, size=32)
    assert bigger.provenance["content_md5"] == p["content_md5"] and bigger.md5 != d.md5
    # auto and an explicit choice that gives the same tensors agree
    assert load_image_folder(root, channels=1).md5 == d.md5
    # one changed byte changes both
    f = root / "benign" / "000.png"
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(f)
    changed = load_image_folder(root)
    assert changed.provenance["content_md5"] != p["content_md5"] and changed.md5 != d.md5


def test_normalised_with_train_statistics(tmp_path):
    from medistill.data.normalize import channel_stats

    d = load_image_folder(make_folder(tmp_path / "ds", per_class=8, kind=["rgb", "grey"]))
    mean, std = channel_stats(d.denormalize(d.train_images))
    assert np.allclose(mean, d.mean, atol=1e-5) and np.allclose(std, d.std, atol=1e-5)
    assert abs(float(d.train_images.mean())) < 1e-4


# --- the command line ----------------------------------------------------------------------------------


def _args(*argv):
    from medistill.cli import build_parser

    return build_parser().parse_args(["baseline", *argv])


def test_cli_prints_the_notices_and_passes_folder_options(tmp_path, capsys):
    from medistill.cli import _load

    make_folder(tmp_path / "mri" / "Training", per_class=12, kind="rgb", size=(50, 40))
    d = _load(_args("--dataset", str(tmp_path / "mri"), "--channels", "1", "--resize", "pad", "--test-fraction", "0.25",
                    "--split-seed", "3", "--ipc", "2"))
    out = capsys.readouterr().out
    assert d.channels == 1 and d.split_sizes == {"train": 18, "val": 0, "test": 6}
    assert "mri: split: no test split folder, so 25% as the test split" in out and "split seed 3" in out
    assert "mri: channels: 1 (as asked)" in out and "mri: size: 24 images of 50×40 px" in out
    assert "padded with black" in out


def test_cli_split_dirs_and_skip_unreadable(tmp_path, capsys):
    from medistill.cli import _load

    make_folder(tmp_path / "ds" / "A")
    make_folder(tmp_path / "ds" / "B", per_class=2)
    (tmp_path / "ds" / "A" / "benign" / "x.jpg").write_text("broken")
    d = _load(_args("--dataset", str(tmp_path / "ds"), "--split-dirs", "train=A,test=B", "--skip-unreadable", "--ipc", "1"))
    assert d.split_sizes == {"train": 12, "val": 0, "test": 4}
    assert "ds: skipped 1 unreadable file(s)" in capsys.readouterr().out


def test_cli_ipc_larger_than_a_folder_class_fails_before_work(tmp_path):
    from medistill.cli import main

    make_folder(tmp_path / "ds" / "train", per_class=5)
    make_folder(tmp_path / "ds" / "test", per_class=2)
    with pytest.raises(ValueError, match="ipc 10 exceeds the smallest class of ds"):
        from medistill.cli import _load

        _load(_args("--dataset", str(tmp_path / "ds"), "--ipc", "10"))
    assert main(["baseline", "--dataset", str(tmp_path / "ds"), "--ipc", "10", "--models", "1", "--epochs", "1",
                 "--threads", "1", "--device", "cpu"]) == 2


def test_cli_folder_options_refused_for_medmnist(capsys):
    from medistill.cli import main

    assert main(["baseline", "--dataset", "breastmnist", "--channels", "3", "--models", "1", "--epochs", "1"]) == 2
    assert "--channels: for image folders only" in capsys.readouterr().err


def test_provenance_travels_into_the_run_folder_and_the_export(tmp_path):
    import json

    from medistill.cli import main
    from medistill.data import ImageSet

    make_folder(tmp_path / "ds" / "train", per_class=4)
    make_folder(tmp_path / "ds" / "test", per_class=2, seed=1)
    run = tmp_path / "run"
    assert main(["distill", "--dataset", str(tmp_path / "ds"), "--method", "dm", "--ipc", "1", "--iterations", "2",
                 "--eval-models", "0", "--threads", "1", "--device", "cpu", "--out", str(run)]) == 0
    expected = load_image_folder(tmp_path / "ds").provenance
    config = json.loads((run / "config.json").read_text())
    assert config["dataset_provenance"]["content_md5"] == expected["content_md5"]
    assert config["dataset_provenance"]["files"] == 12
    assert ImageSet.load(run).metadata["dataset_provenance"] == config["dataset_provenance"]
    assert main(["export", str(run), "--out", str(tmp_path / "pkg")]) == 0
    manifest = json.loads((tmp_path / "pkg" / "metadata.json").read_text())
    assert manifest["source_dataset"]["provenance"]["content_md5"] == expected["content_md5"]
    assert expected["content_md5"] in (tmp_path / "pkg" / "README.md").read_text()
    # evaluate reads the folder again with the recorded settings: the run folder, the package, a moved folder
    score = ["--models", "1", "--epochs", "1", "--threads", "1", "--device", "cpu"]
    assert main(["evaluate", str(run), *score]) == 0
    assert main(["evaluate", str(tmp_path / "pkg"), *score]) == 0
    moved = shutil.move(str(tmp_path / "ds"), str(tmp_path / "moved"))
    assert main(["evaluate", str(run), *score]) == 2  # not there any more: named, with the way out
    assert main(["evaluate", str(run), "--dataset", moved, *score]) == 0
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(Path(moved) / "test" / "benign" / "000.png")
    with pytest.raises(DataError, match="changed since the set was distilled"):
        from medistill.data import reload_image_folder

        reload_image_folder(config["dataset_provenance"], config["dataset_md5"], path=moved)
