"""Every documented flag of every subcommand runs: the parser is walked, not a hand-kept list of flags.

For each subcommand there is one tiny valid invocation (``BASE``); each optional flag the parser
defines is then added to it, with a value derived from the flag itself (each choice of a flag with
choices, both forms of a --x/--no-x switch) or, for a flag that takes a free value, the sample value
of its destination in ``SAMPLES``. A new flag is picked up automatically; one whose value cannot be
derived fails :func:`test_every_flag_has_a_value` until a sample is added. Every run must exit 0.
Real BreastMNIST, budgets of one or two epochs, one thread.
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import pytest
import torch

from medistill.cli import build_parser, main

# Sample values by destination; {fresh} is a new path under the test's tmp folder, {…} fixture paths.
SAMPLES = {
    "data_root": "{data_root}", "dataset": "breastmnist", "size": "28", "ipc": "1", "subsets": "3",
    "save": "{fresh}.pt", "models": "1", "epochs": "1", "eval_model": "convnet", "model": "convnet", "seed": "1",
    "threads": "1", "device": "cpu", "json": "{fresh}.json", "method": "dm", "preset": "quick", "iterations": "1",
    "set": "lr_img=0.5", "out": "{fresh}", "eval_models": "1", "eval_epochs": "1", "random_subsets": "2",
    "stop_after": "1", "dist_timeout": "30", "num_experts": "1", "lr": "0.02", "experts": "{bank}",
    "datasets": "breastmnist", "methods": "random", "ipcs": "1", "seeds": "0", "full_epochs": "1",
    "runs": "{fresh}", "import_runs": "{study_runs}", "rank": "0", "world_size": "1", "table": "{study_table}",
    "k": "2", "quantile": "0.05", "embed_epochs": "1", "max_reference": "50", "mia_models": "1", "mia_epochs": "1",
    "cache": "{fresh}",
    # image-folder loading (flags of the parser's "image folders" group run with --dataset on a generated folder)
    "split_dirs": "train=Training,test=Testing", "test_fraction": "0.25", "split_seed": "3",
    # differentially private DM (docs/privacy.md)
    "dp_epsilon": "8", "dp_delta": "1e-5", "dp_clip": "10", "dp_sample_rate": "0.5",
}
# Folder flags run on a generated folder without split folders, except those that name split folders.
FOLDER_FOR = {"split_dirs": "{split_folder}"}

# One tiny valid invocation per subcommand.
BASE = {
    "info": ["info", "--data-root", "{data_root}"],
    "baseline": ["baseline", "--dataset", "breastmnist", "--data-root", "{data_root}", "--ipc", "1", "--subsets", "2",
                 "--models", "1", "--epochs", "1", "--threads", "1"],
    "evaluate": ["evaluate", "{set}", "--data-root", "{data_root}", "--models", "1", "--epochs", "1", "--threads", "1"],
    "distill": ["distill", "--dataset", "breastmnist", "--data-root", "{data_root}", "--method", "dm", "--ipc", "1",
                "--preset", "quick", "--iterations", "1", "--eval-models", "1", "--eval-epochs", "1",
                "--random-subsets", "2", "--out", "{fresh}", "--threads", "1"],
    "experts": ["experts", "--dataset", "breastmnist", "--data-root", "{data_root}", "--num-experts", "1", "--epochs",
                "1", "--out", "{fresh}", "--threads", "1"],
    "study": ["study", "--datasets", "breastmnist", "--methods", "random", "--ipcs", "1", "--seeds", "0",
              "--eval-models", "1", "--eval-epochs", "1", "--random-subsets", "2", "--data-root", "{data_root}",
              "--out", "{fresh}", "--runs", "{fresh}", "--threads", "1"],
    "predict": ["predict", "--dataset", "breastmnist", "--data-root", "{data_root}", "--table", "{study_table}",
                "--ipc", "1", "--models", "1", "--epochs", "1", "--threads", "1"],
    "report": ["report", "--table", "{study_table}", "--out", "{fresh}"],
    "export": ["export", "{run}", "--out", "{fresh}"],
    "audit": ["audit", "{set}", "--data-root", "{data_root}", "--embed-epochs", "1", "--mia-models", "1",
              "--mia-epochs", "1", "--max-reference", "50", "--out", "{fresh}", "--threads", "1"],
}

# Flags that act on something the base invocation must have made first (same --out).
RUN_BASE_FIRST = {("distill", "--resume"), ("distill", "--force"), ("export", "--force")}
# Flags that only make sense with other settings: extra arguments added with the flag.
WITH = {
    ("distill", "--experts"): ["--method", "mtt", "--set", "max_start_epoch=1", "--set", "expert_epochs=1",
                               "--set", "syn_steps=1"],
    ("study", "--import-only"): ["--import-runs", "{study_runs}", "--out", "{fresh}"],
    **{("distill", flag): ["--dp-epsilon", "8"] for flag in ("--dp-delta", "--dp-clip", "--dp-sample-rate")},
}


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def folder_dests(sub: argparse.ArgumentParser) -> set[str]:
    """Destinations of the flags in the parser's image-folder group (they need --dataset to be a folder)."""
    return {a.dest for g in sub._action_groups if (g.title or "").startswith("image folders") for a in g._group_actions}


def flag_cases(name: str, sub: argparse.ArgumentParser) -> list[tuple[str, list[str]]]:
    """(case id, the arguments to add) for every optional flag of ``sub``; folder flags also set --dataset."""
    cases = []
    folder = folder_dests(sub)
    for action in sub._actions:
        if isinstance(action, argparse._HelpAction) or not action.option_strings:
            continue
        flag = action.option_strings[0]
        if action.dest in folder:
            dataset = ["--dataset", FOLDER_FOR.get(action.dest, "{flat_folder}")]
            for case_id, extra in _value_cases(name, action, flag):
                cases.append((case_id, extra + dataset))
            continue
        cases += _value_cases(name, action, flag)
    return cases


def _value_cases(name: str, action: argparse.Action, flag: str) -> list[tuple[str, list[str]]]:
    """Each choice, both forms of a --x/--no-x switch, the bare flag, or the flag with its sample value."""
    if isinstance(action, argparse.BooleanOptionalAction):
        return [(f"{name} {opt}", [opt]) for opt in action.option_strings]
    if action.nargs == 0:  # store_true / store_false / store_const
        return [(f"{name} {flag}", [flag])]
    if action.choices:
        return [(f"{name} {flag} {c}", [flag, str(c)]) for c in action.choices]
    return [(f"{name} {flag}", [flag, SAMPLES.get(action.dest, f"<no sample for {action.dest}>")])]


def _write_folder(root: Path, splits: tuple[str, ...], per_class: int) -> Path:
    """A small image folder: <root>/[split/]<class>/img_k.png, two classes of 28 px grey images."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for split in splits:
        for c, name in enumerate(("benign", "malignant")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for k in range(per_class):
                pixels = (torch.rand(28, 28, generator=g) * 128 + 64 * c).to(torch.uint8).numpy()
                Image.fromarray(pixels, mode="L").save(folder / f"img_{k}.png")
    return root


ALL_CASES = [case for name, sub in subcommands().items() for case in flag_cases(name, sub)]


def test_every_subcommand_and_flag_is_covered():
    missing_base = sorted(set(subcommands()) - set(BASE))
    assert not missing_base, f"add a tiny invocation to BASE for the new subcommand(s) {missing_base}"
    no_value = [case_id for case_id, extra in ALL_CASES if any(v.startswith("<no sample") for v in extra)]
    assert not no_value, f"flags whose value cannot be derived: {no_value}; add their destination to SAMPLES"


@pytest.fixture(scope="module")
def made(data_root, tmp_path_factory):
    """Things the base invocations need: a saved set, a run folder, an expert bank, a study table."""
    root = tmp_path_factory.mktemp("flags")
    paths = {"data_root": str(data_root), "set": str(root / "set.pt"), "run": str(root / "run"),
             "bank": str(root / "bank"), "study_runs": str(root / "study_runs"),
             "study_table": str(root / "study" / "study.csv"),
             "flat_folder": str(_write_folder(root / "flat", ("",), 10)),
             "split_folder": str(_write_folder(root / "split", ("Training", "Testing"), 6))}
    common = ["--data-root", str(data_root), "--threads", "1"]
    assert main(["baseline", "--dataset", "breastmnist", "--ipc", "2", "--subsets", "1", "--models", "1",
                 "--epochs", "1", "--save", paths["set"], *common]) == 0
    assert main(["distill", "--dataset", "breastmnist", "--method", "dm", "--ipc", "1", "--preset", "quick",
                 "--iterations", "1", "--eval-models", "1", "--eval-epochs", "1", "--random-subsets", "2",
                 "--out", paths["run"], *common]) == 0
    assert main(["experts", "--dataset", "breastmnist", "--num-experts", "1", "--epochs", "2", "--out", paths["bank"],
                 *common]) == 0
    assert main(["study", "--datasets", "breastmnist", "--methods", "dm,random", "--ipcs", "1", "--seeds", "0",
                 "--iterations", "1", "--eval-models", "1", "--eval-epochs", "1", "--random-subsets", "2",
                 "--out", str(root / "study"), "--runs", paths["study_runs"], *common]) == 0
    return root, paths


@pytest.mark.parametrize("case_id,extra", ALL_CASES, ids=[c[0] for c in ALL_CASES])
def test_flag_runs(case_id, extra, made):
    root, paths = made
    name = case_id.split()[0]
    flag = extra[0]
    counter = itertools.count()

    def fill(args: list[str], fresh: str) -> list[str]:
        return [a.format(fresh=fresh, **paths) if "{" in a else a for a in args]

    fresh = str(root / f"{case_id.replace(' ', '_').replace('-', '')}-{next(counter)}")
    base = fill(BASE[name], fresh)
    threads = torch.get_num_threads()
    try:
        if (name, flag) in RUN_BASE_FIRST:
            assert main(base) == 0
        argv = base + fill(WITH.get((name, flag), []), fresh) + fill(extra, fresh + "-value")
        assert main(argv) == 0, f"exit code not 0 for: medistill {' '.join(argv)}"
    finally:
        torch.set_num_threads(threads)
    assert Path(root).exists()
