"""Tasks: datasets derived from a source by choosing and merging its classes, named in one grammar.

The study needs many tasks of different difficulty from few sources: RetinaMNIST grade 0 vs 4 is
easy, 0 vs 1 is hard; each pair of brain tumours is its own task. A task is a dataset-level
transform of a loaded :class:`~medistill.data.ImageDataset`: keep the images of the chosen classes
in every split (the source's own train/val/test splits), relabel them 0 … G−1 in the order written,
and normalise with the task's own train-split statistics. Its ``md5`` is a fingerprint of the source's
MD5/fingerprint and the class groups, so caches and run folders keyed by it never mix two tasks.

Grammar (``parse_task``; whitespace not allowed)::

    TASK    := SOURCE | SOURCE ":" GROUPS | "simulation:" SOURCE ("_v_" SOURCE)+
    SOURCE  := a MedMNIST name (breastmnist, retinamnist, …)
             | "brain"                    the brain tumour MRI folder (see ``FOLDER_SOURCES``)
             | a folder path              (``path/to/folder:GROUPS``)
    GROUPS  := GROUP ("v" GROUP)+          classes by index only:  retinamnist:0v4, retinamnist:0v1-4
             | GROUP ("_v_" GROUP)+        classes by name:        brain:glioma_v_meningioma
    GROUP   := CLASS ("+" CLASS)*          classes merged into one: brain:notumor_v_glioma+meningioma+pituitary
    CLASS   := index | index "-" index (an inclusive range, merged) | class name (case-insensitive)

Each group is one class of the task, labelled in the order written; with two groups the task is
binary and the *second* group is the positive class (the one whose probability the AUC ranks and
whose recall is the sensitivity). Classes not named are left out of every split. A class may appear
in one group only. ``simulation:A_v_B_v_C`` is the between-source task: each source is one class
(grey images repeated into three channels when any member has colour; at most 300/50/150 images per
class of train/val/test, a seeded draw from that source's own split).

Names are canonical (``task_name``): ``retinamnist:0v1+2+3+4`` and ``retinamnist:0v1-4`` are one task,
written the second way; a task naming every class of its source in order is the source itself.

Each task has a *source key* (``task_source``): the MedMNIST name, ``brain``, a folder's name, or for
the simulation task its members joined with ``+`` (sorted). The predictor groups tasks by it, so the
tasks of one source are never counted as independent evidence.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data import DataError, ImageDataset, dataset_names, default_root, load_dataset

SIMULATION = "simulation"
# Short names of image folders, looked for beside the MedMNIST data root (then inside it), or at the
# path in the environment variable.
FOLDER_SOURCES = {"brain": ("brain_tumor_mri", "MEDISTILL_BRAIN_MRI")}
SIMULATION_CAP = {"train": 300, "val": 50, "test": 150}
SPLITS = ("train", "val", "test")
TASK_VERSION = 1  # bump when the transform changes what a task name loads
_NAME_TOKEN = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_NUMERIC_SPEC = re.compile(r"^[0-9+\-v]+$")


@dataclass(frozen=True)
class TaskSpec:
    """A parsed task name. ``groups``: class tokens per group as written (None: the whole source)."""

    source: str  # MedMNIST name, folder alias or folder path; for the simulation task, "simulation"
    groups: tuple[tuple[str, ...], ...] | None = None
    members: tuple[str, ...] = ()  # the simulation task's sources

    @property
    def is_simulation(self) -> bool:
        return self.source == SIMULATION and bool(self.members)


def _split_source(name: str) -> tuple[str, str | None]:
    """'retinamnist:0v4' → ('retinamnist', '0v4'); a path may hold ':' only before its last '/'."""
    if ":" not in name:
        return name, None
    source, spec = name.rsplit(":", 1)
    if "/" in spec or os.sep in spec:
        return name, None
    return source, spec


def _split_groups(spec: str) -> list[str]:
    if _NUMERIC_SPEC.match(spec):
        return spec.split("v")
    return spec.split("_v_")


def parse_task(name: str) -> TaskSpec:
    """Parse a task name (see the module doc); DataError with the grammar when it does not parse."""
    name = str(name).strip()
    if not name:
        raise DataError("empty task name")
    source, spec = _split_source(name)
    if spec is None:
        return TaskSpec(source)
    if source.lower() == SIMULATION:
        members = tuple(m.lower() if m.lower() in dataset_names() else m for m in spec.split("_v_"))
        if len(members) < 2 or any(not m for m in members):
            raise DataError(f"{name!r}: the simulation task names at least two sources, e.g. "
                            "simulation:breastmnist_v_retinamnist_v_brain")
        if len(set(members)) != len(members):
            raise DataError(f"{name!r}: a source may be named once")
        return TaskSpec(SIMULATION, None, members)
    groups = tuple(tuple(t for t in g.split("+")) for g in _split_groups(spec))
    if len(groups) < 2 or any(not t for g in groups for t in g):
        raise DataError(f"{name!r}: a task names at least two groups of classes separated by 'v' (indices, e.g. "
                        "retinamnist:0v4, retinamnist:0v1-4) or '_v_' (names, e.g. brain:glioma_v_notumor), classes "
                        "of one group joined by '+'")
    return TaskSpec(source.lower() if source.lower() in dataset_names() else source, groups)


def is_task_name(name: str) -> bool:
    """Whether ``name`` needs this module to load (a task spec, a folder alias or a simulation task)."""
    source, spec = _split_source(str(name))
    return spec is not None or source in FOLDER_SOURCES


# sources ------------------------------------------------------------------------------------------------


def folder_source_path(alias: str, root=None) -> Path:
    """Where a folder alias (``brain``) lives: $ENV, else beside the MedMNIST data root, else inside it."""
    folder, env = FOLDER_SOURCES[alias]
    if os.environ.get(env):
        path = Path(os.environ[env]).expanduser()
        if not path.is_dir():
            raise DataError(f"${env} = {path}: no such folder")
        return path
    data_root = default_root(root)
    candidates = [data_root.parent / folder, data_root / folder]
    for path in candidates:
        if path.is_dir():
            return path
    raise DataError(f"the {alias!r} source is the image folder {folder}/, not found at "
                    f"{' or '.join(str(c) for c in candidates)}; set ${env} to its path")


def source_key(source: str, root=None) -> str:
    """The name tasks of ``source`` are grouped under: a MedMNIST name, an alias (also for its folder given
    by path), or a folder's name."""
    if source in FOLDER_SOURCES or source.lower() in dataset_names():
        return source.lower() if source.lower() in dataset_names() else source
    path = Path(source).expanduser()
    for alias in FOLDER_SOURCES:
        try:
            if path.is_dir() and path.resolve() == folder_source_path(alias, root).resolve():
                return alias
        except DataError:
            pass
    return path.name or source


def task_source(name: str) -> str:
    """The source key of a task name (no loading): ``brain`` for ``brain:glioma_v_notumor``; the
    simulation task's sorted members joined with '+'."""
    spec = parse_task(name)
    if spec.is_simulation:
        return "+".join(sorted(source_key(m) for m in spec.members))
    return source_key(spec.source)


class TaskLoader:
    """Loads task names (and plain dataset names), keeping each source loaded once."""

    def __init__(self, root=None, size: int = 28, verify_md5: bool = True):
        self.root = root
        self.size = size
        self.verify_md5 = verify_md5
        self._sources: dict[str, ImageDataset] = {}

    def source(self, source: str) -> ImageDataset:
        if source not in self._sources:
            if source in FOLDER_SOURCES:
                dataset = load_dataset(str(folder_source_path(source, self.root)), size=self.size)
                dataset.name = source
            elif source.lower() in dataset_names() or source.lower() == SIMULATION:
                dataset = load_dataset(source, size=self.size, root=self.root, verify_md5=self.verify_md5)
            else:
                dataset = load_dataset(source, size=self.size)
            self._sources[source] = dataset
        return self._sources[source]

    def load(self, name: str) -> ImageDataset:
        spec = parse_task(name)
        if spec.is_simulation:
            members = [self.source(m) for m in spec.members]
            for m in members:
                _single_label(m, name)
            return simulation_task(members, task_name(name))
        dataset = self.source(spec.source)
        if spec.groups is None:
            return dataset
        _single_label(dataset, name)
        groups = resolve_groups(dataset, spec.groups, name)
        if [list(g) for g in groups] == [[c] for c in range(dataset.num_classes)]:
            return dataset  # every class in order: the source itself
        return derive_task(dataset, groups, canonical_name(spec.source, dataset, groups))


def load_task(name: str, root=None, size: int = 28, verify_md5: bool = True) -> ImageDataset:
    """The dataset a task name (or a plain dataset name or folder) stands for."""
    return TaskLoader(root, size, verify_md5).load(name)


# class groups --------------------------------------------------------------------------------------------


def _single_label(dataset: ImageDataset, where: str) -> None:
    if getattr(dataset, "multilabel", False):
        raise DataError(f"{where}: {dataset.name} is multi-label ({dataset.task}); tasks choose classes of "
                        "single-label sources only")


def _resolve_token(dataset: ImageDataset, token: str, where: str) -> list[int]:
    lowered = [n.lower() for n in dataset.class_names]
    if token.lower() in lowered:
        return [lowered.index(token.lower())]
    if token.isdigit():
        index = int(token)
        if index < dataset.num_classes:
            return [index]
    elif re.fullmatch(r"\d+-\d+", token):
        lo, hi = (int(t) for t in token.split("-"))
        if lo < hi < dataset.num_classes:
            return list(range(lo, hi + 1))
    classes = ", ".join(f"{i} '{n}'" for i, n in enumerate(dataset.class_names))
    raise DataError(f"{where}: no class {token!r} in {dataset.name} (classes: {classes})")


def resolve_groups(dataset: ImageDataset, groups, where: str) -> tuple[tuple[int, ...], ...]:
    """Class tokens per group → sorted source class indices per group; DataError for unknown or repeated classes."""
    out, seen = [], {}
    for g, tokens in enumerate(groups):
        indices = sorted({i for t in tokens for i in _resolve_token(dataset, t, where)})
        for i in indices:
            if i in seen:
                raise DataError(f"{where}: class {i} '{dataset.class_names[i]}' is in groups {seen[i] + 1} and {g + 1}; "
                                "a class may be in one group only")
            seen[i] = g
        out.append(tuple(indices))
    return tuple(out)


def _numeric_names(dataset: ImageDataset) -> bool:
    return all(n == str(i) for i, n in enumerate(dataset.class_names))


def _by_name(dataset: ImageDataset) -> bool:
    return not _numeric_names(dataset) and all(_NAME_TOKEN.match(n) for n in dataset.class_names)


def _render_indices(group: tuple[int, ...]) -> str:
    """(1, 2, 3, 4) → '1-4'; (0, 2) → '0+2'."""
    parts, start = [], 0
    while start < len(group):
        end = start
        while end + 1 < len(group) and group[end + 1] == group[end] + 1:
            end += 1
        parts.append(str(group[start]) if end == start else f"{group[start]}-{group[end]}")
        start = end + 1
    return "+".join(parts)


def group_label(dataset: ImageDataset, group: tuple[int, ...]) -> str:
    """A merged class's name: 'glioma+meningioma+pituitary', '1-4', or the source class's own name."""
    if len(group) == 1:
        return dataset.class_names[group[0]]
    if _by_name(dataset):
        return "+".join(dataset.class_names[i] for i in group)
    return _render_indices(group)


def canonical_name(source: str, dataset: ImageDataset, groups) -> str:
    """'retinamnist:0v1-4', 'brain:glioma_v_notumor' (names where every class name is a plain word)."""
    if _by_name(dataset):
        spec = "_v_".join("+".join(dataset.class_names[i] for i in g) for g in groups)
    else:
        spec = "v".join(_render_indices(g) for g in groups)
    return f"{source}:{spec}"


def task_name(name: str, root=None) -> str:
    """The canonical form of a task name, without loading any images for MedMNIST or simulation tasks."""
    spec = parse_task(name)
    if spec.is_simulation:
        return f"{SIMULATION}:" + "_v_".join(spec.members)
    if spec.groups is None:
        return spec.source
    return load_task(name, root=root).name  # the class names decide the canonical form


# the transforms ------------------------------------------------------------------------------------------


def _pixels(dataset: ImageDataset, split: str) -> torch.Tensor:
    return dataset.denormalize(getattr(dataset, f"{split}_images"))


def _normalised(pixels: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    from ..data.normalize import channel_stats, normalize

    mean, std = channel_stats(pixels["train"])
    return {s: normalize(x, mean, std) for s, x in pixels.items()}, mean, std


def _fingerprint(payload: dict) -> str:
    return hashlib.md5(json.dumps({**payload, "task_version": TASK_VERSION}, sort_keys=True).encode()).hexdigest()


def derive_task(dataset: ImageDataset, groups, name: str) -> ImageDataset:
    """The task of ``dataset`` keeping the classes in ``groups`` (source indices per group), group g → label g.

    Every split keeps its own images of those classes; images are renormalised with the task's
    train-split statistics; provenance names the source and its fingerprint.
    """
    groups = tuple(tuple(int(i) for i in g) for g in groups)
    mapping = torch.full((dataset.num_classes,), -1, dtype=torch.int64)
    for label, group in enumerate(groups):
        mapping[list(group)] = label
    pixels, labels = {}, {}
    for split in SPLITS:
        source_labels = getattr(dataset, f"{split}_labels")
        new = mapping[source_labels]
        keep = new >= 0
        pixels[split] = _pixels(dataset, split)[keep]
        labels[split] = new[keep].clone()
    counts = {s: torch.bincount(labels[s], minlength=len(groups)).tolist() for s in SPLITS}
    for split in ("train", "test"):
        empty = [group_label(dataset, g) for g, n in zip(groups, counts[split]) if n == 0]
        if empty:
            raise DataError(f"{name}: class(es) {', '.join(empty)} have no {split} image")
    tensors, mean, std = _normalised(pixels)
    class_names = [group_label(dataset, g) for g in groups]
    task = "binary-class" if len(groups) == 2 else (
        dataset.task if dataset.task in ("multi-class", "ordinal-regression") else "multi-class")
    description = {"kind": "task", "task": name, "source": source_key(name.rsplit(":", 1)[0]),
                   "source_name": dataset.name, "source_md5": dataset.md5,
                   "groups": [{"label": i, "name": class_names[i], "source_classes": list(g),
                               "source_class_names": [dataset.class_names[c] for c in g]}
                              for i, g in enumerate(groups)],
                   "class_counts": counts, "renormalised": "with the task's train-split statistics"}
    fingerprint = _fingerprint({"source_md5": dataset.md5, "groups": [list(g) for g in groups],
                                "size": dataset.image_size, "channels": dataset.channels})
    positive = f"; positive class '{class_names[1]}'" if len(groups) == 2 else ""
    notices = list(dataset.notices) + [
        f"task {name}: " + ", ".join(f"{class_names[i]} = {len(g)} source class(es) {list(g)}" for i, g in
                                     enumerate(groups)) + f"; train {counts['train']}, test {counts['test']}{positive}"]
    return ImageDataset(
        name=name,
        train_images=tensors["train"], train_labels=labels["train"],
        val_images=tensors["val"], val_labels=labels["val"],
        test_images=tensors["test"], test_labels=labels["test"],
        mean=mean, std=std, class_names=class_names, task=task, md5=fingerprint, source=dataset.source,
        extra={**dataset.extra, "task": description},
        provenance={**description, "source_provenance": dataset.provenance},
        notices=notices,
    )


def simulation_task(members: list[ImageDataset], name: str, seed: int = 0, cap: dict | None = None) -> ImageDataset:
    """Each member dataset is one class (label = its position); at most ``cap[split]`` images per class."""
    if len(members) < 2:
        raise DataError(f"{name}: the simulation task needs at least two sources")
    caps = {**SIMULATION_CAP, **(cap or {})}
    sizes = {m.image_size for m in members}
    if len(sizes) != 1:
        raise DataError(f"{name}: members have different image sizes {sorted(sizes)}")
    channels = max(m.channels for m in members)
    pixels = {s: [] for s in SPLITS}
    labels = {s: [] for s in SPLITS}
    for label, member in enumerate(members):
        generator = torch.Generator().manual_seed(seed * 7919 + label)
        for split in SPLITS:
            x = _pixels(member, split)
            if len(x) > caps[split]:
                x = x[torch.randperm(len(x), generator=generator)[: caps[split]].sort().values]
            if x.shape[1] != channels:
                x = x.expand(-1, channels, -1, -1)
            pixels[split].append(x.clone())
            labels[split].append(torch.full((len(x),), label, dtype=torch.int64))
    stacked = {s: torch.cat(pixels[s]) for s in SPLITS}
    tensors, mean, std = _normalised(stacked)
    targets = {s: torch.cat(labels[s]) for s in SPLITS}
    keys = [source_key(m.name) for m in members]
    counts = {s: torch.bincount(targets[s], minlength=len(members)).tolist() for s in SPLITS}
    description = {"kind": "simulation task", "task": name, "source": "+".join(sorted(keys)),
                   "members": [{"label": i, "source": k, "md5": m.md5} for i, (k, m) in enumerate(zip(keys, members))],
                   "cap": caps, "seed": seed, "channels": channels, "class_counts": counts}
    fingerprint = _fingerprint({"members": [[k, m.md5] for k, m in zip(keys, members)], "cap": sorted(caps.items()),
                                "seed": seed, "channels": channels})
    return ImageDataset(
        name=name,
        train_images=tensors["train"], train_labels=targets["train"],
        val_images=tensors["val"], val_labels=targets["val"],
        test_images=tensors["test"], test_labels=targets["test"],
        mean=mean, std=std, class_names=keys, task="binary-class" if len(members) == 2 else "multi-class",
        md5=fingerprint, source=None, extra={"task": description}, provenance=description,
        notices=[f"task {name}: each source one class ({', '.join(keys)}), at most "
                 f"{caps['train']}/{caps['val']}/{caps['test']} train/val/test images per class; train {counts['train']}, "
                 f"test {counts['test']}"],
    )
