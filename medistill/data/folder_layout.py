"""Where the images of a user's folder are: split folders, class folders and image files.

Only the file system is read here (no image is decoded), so every mistake in the layout is reported
before any image is read.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")
SPLITS = ("train", "val", "test")
# Usual names of split folders, matched case-insensitively ("Training", "TEST", "Valid", ...).
SPLIT_ALIASES = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation"),
    "test": ("test", "testing"),
}
_JUNK_DIRS = {"__macosx"}  # macOS zip metadata


def _visible(name: str) -> bool:
    return not name.startswith(".") and name.lower() not in _JUNK_DIRS


def _subdirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and _visible(p.name)), key=lambda p: p.name)


@dataclass
class SplitFiles:
    """The image files of one split, labelled by class index."""

    folder: Path
    files: list[Path] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    ignored: dict[str, int] = field(default_factory=dict)  # suffix → count of files that are not images


def parse_split_dirs(text: str | dict | None) -> dict[str, str] | None:
    """``"train=Training,test=Testing"`` (or a dict) → ``{"train": "Training", "test": "Testing"}``."""
    if text is None or isinstance(text, dict):
        mapping = text
    else:
        mapping = {}
        for part in str(text).split(","):
            if not part.strip():
                continue
            key, sep, value = part.partition("=")
            if not sep or not value.strip():
                raise DataError(f"--split-dirs {text!r}: expected SPLIT=FOLDER pairs such as train=Training,test=Testing")
            mapping[key.strip().lower()] = value.strip()
    if mapping is None:
        return None
    unknown = sorted(set(mapping) - set(SPLITS))
    if unknown:
        raise DataError(f"split-dirs: unknown split {', '.join(unknown)}; use train, val and test")
    if "train" not in mapping:
        raise DataError("split-dirs: name the train split's folder (train=FOLDER)")
    if len(set(mapping.values())) != len(mapping):
        raise DataError(f"split-dirs {mapping}: two splits name the same folder")
    return dict(mapping)


def find_splits(root: Path, split_dirs: dict[str, str] | None) -> tuple[dict[str, Path], list[str]]:
    """The split folders of ``root`` → ({split: folder}, notices).

    With an explicit mapping, exactly those folders; otherwise sub-folders named as a split (case-insensitive
    usual names). A root without any split folder is one pool of class folders: {"train": root}.
    """
    notices: list[str] = []
    if split_dirs is not None:
        found = {}
        for split, name in split_dirs.items():
            folder = Path(name).expanduser()
            folder = folder if folder.is_absolute() else root / folder
            if not folder.is_dir():
                raise DataError(f"split-dirs: the {split} folder {folder} does not exist")
            found[split] = folder
        return found, notices
    matches: dict[str, list[Path]] = {s: [] for s in SPLITS}
    others = []
    for d in _subdirs(root):
        role = next((s for s, names in SPLIT_ALIASES.items() if d.name.lower() in names), None)
        (matches[role] if role else others).append(d)
    if not any(matches.values()):
        return {"train": root}, notices
    for split, dirs in matches.items():
        if len(dirs) > 1:
            raise DataError(f"{root}: {' and '.join(d.name for d in dirs)} both look like the {split} split; "
                            f"pass --split-dirs (e.g. {split}={dirs[0].name}) to say which")
    if not matches["train"]:
        named = ", ".join(f"{d[0].name}/" for d in matches.values() if d)
        raise DataError(f"{root}: found the split folder(s) {named} but no train split (train/ or Training/); "
                        "rename it or pass --split-dirs train=FOLDER,test=FOLDER")
    if others:
        notices.append(f"ignored folder(s) {', '.join(d.name + '/' for d in others)} beside the split folders "
                       "(not named train/val/test)")
    return {s: dirs[0] for s, dirs in matches.items() if dirs}, notices


def _image_files(folder: Path, ignored: dict[str, int]) -> list[Path]:
    """Image files anywhere under ``folder`` (hidden files and folders skipped), sorted by relative path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if _visible(d))
        for name in filenames:
            if not _visible(name):
                continue
            suffix = os.path.splitext(name)[1].lower()
            if suffix in IMAGE_SUFFIXES:
                found.append(Path(dirpath, name))
            else:
                ignored[suffix or "(no suffix)"] = ignored.get(suffix or "(no suffix)", 0) + 1
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def class_names_of(folder: Path, label: str) -> list[str]:
    """The class folder names of a split (or of the whole root), at least two."""
    dirs = _subdirs(folder)
    if not dirs:
        loose = sum(1 for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        hint = f" ({loose} images lie directly in it)" if loose else ""
        raise DataError(f"{label}: no class folders found{hint}; expected {folder}/<class name>/<images>, "
                        "one folder per class")
    if len(dirs) < 2:
        raise DataError(f"{label}: only one class folder ({dirs[0].name}/); classification needs at least 2 classes, "
                        f"one folder each: {folder}/<class name>/<images>")
    return [d.name for d in dirs]


def scan_split(folder: Path, class_names: list[str], label: str) -> SplitFiles:
    """The labelled image files of a split whose class folders must be exactly ``class_names``."""
    names = [d.name for d in _subdirs(folder)]
    if not names:
        raise DataError(f"{label}: the split is empty (no class folders); expected {folder}/<class name>/<images>")
    if names != class_names:
        missing = [n for n in class_names if n not in names]
        extra = [n for n in names if n not in class_names]
        what = "; ".join(x for x in (f"missing {missing}" if missing else "", f"extra {extra}" if extra else "") if x)
        raise DataError(f"{label}: class folders {names} differ from the train split's {class_names} ({what})")
    split = SplitFiles(folder)
    for index, name in enumerate(class_names):
        ignored: dict[str, int] = {}
        files = _image_files(folder / name, ignored)
        if not files:
            other = f"; it holds {', '.join(f'{n} {s}' for s, n in sorted(ignored.items()))} files" if ignored else ""
            dicom = "; convert DICOM (.dcm) files to PNG first" if ".dcm" in ignored else ""
            raise DataError(f"{folder / name}: no images ({', '.join(IMAGE_SUFFIXES)}){other}{dicom}")
        split.files += files
        split.labels += [index] * len(files)
        for suffix, n in ignored.items():
            split.ignored[suffix] = split.ignored.get(suffix, 0) + n
    return split
