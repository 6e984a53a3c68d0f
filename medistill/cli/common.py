"""Flags and helpers shared by the subcommands: the data and evaluation flags, loading the dataset they
name, the evaluation config they ask for, writing a result as JSON."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

DEFAULT_RUNS = "runs"


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="MedMNIST name (e.g. breastmnist) or an image folder path")
    p.add_argument("--data-root", default=None, help="folder with the MedMNIST .npz files (default: $MEDISTILL_DATA, then ~/.medmnist)")
    p.add_argument("--size", type=int, default=28,
                   help="image size in pixels (MedMNIST: 28, 64, 128, 224; an image folder: any, default 28, the "
                        "ConvNet protocol's size)")
    p.add_argument("--allow-md5-mismatch", action="store_true", help="accept a file whose MD5 is not the official one")
    p.add_argument("--download", action="store_true", help="try medmnist's download when the file is missing")
    folder = p.add_argument_group("image folders (--dataset PATH: PATH/[split/]<class>/<images>)")
    folder.add_argument("--channels", choices=["auto", "1", "3"], default=None,
                        help="auto (default): 1 when every image is grey (even stored as RGB), else 3 (colour kept)")
    folder.add_argument("--resize", choices=["stretch", "pad", "crop"], default=None,
                        help="how images become --size squares: stretch (default), pad (keep the aspect ratio, "
                             "black borders) or crop (the centred square)")
    folder.add_argument("--split-dirs", default=None, metavar="SPLIT=FOLDER,...",
                        help="split folders by name, e.g. train=Training,test=Testing (default: found by their usual "
                             "names, case-insensitive: train/training, val/valid/validation, test/testing)")
    folder.add_argument("--test-fraction", type=float, default=None,
                        help="without a test split: the share of each class held out as the test split (default 0.2)")
    folder.add_argument("--split-seed", type=int, default=None, help="seed of that held-out split (default 0)")
    folder.add_argument("--skip-unreadable", action="store_true",
                        help="leave out image files that cannot be read (default: stop and name them)")


def _add_eval_args(p: argparse.ArgumentParser, default_models: int | None = 5, default_seed: int | None = 0) -> None:
    p.add_argument("--models", type=int, default=default_models, help="networks trained for the score (mean ± std)")
    p.add_argument("--epochs", type=int, default=None,
                   help="training epochs E per network (protocol: 300, 1000 with DSA; the published schedule runs E + 1)")
    p.add_argument("--eval-model", default="convnet", help="network to evaluate with (convnet, resnet18, …)")
    p.add_argument("--dsa", action=argparse.BooleanOptionalAction, default=None,
                   help="train the evaluation networks with DSA augmentation (default: as the set says — on for "
                        "DSA/DM/MTT sets, off for DC sets and real images)")
    p.add_argument("--schedule", choices=["published", "half"], default=None,
                   help="lr schedule: published (E + 1 epochs, lr x0.1 after epoch E//2 + 1, fresh optimiser; the "
                        "default) or half (E epochs, lr x0.1 from epoch E//2, medistill <= 0.1)")
    p.add_argument("--seed", type=int, default=default_seed)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", default=None, help="also write the result as JSON to this path")


def _add_dist_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dist-timeout", type=float, default=300.0, metavar="SECONDS",
                   help="under torchrun: how long a rank waits for the others at a collective before it stops "
                        "with an error (a dead or hung rank)")


def _load(args):
    from ..data import is_folder_path, load_dataset

    folder_flags = {"channels": "--channels", "resize": "--resize", "split_dirs": "--split-dirs",
                    "test_fraction": "--test-fraction", "split_seed": "--split-seed", "skip_unreadable": "--skip-unreadable"}
    given = {key: getattr(args, key) for key in folder_flags if getattr(args, key, None) not in (None, False)}
    if is_folder_path(args.dataset):
        kwargs = given
    else:
        if given:
            raise ValueError(f"{', '.join(folder_flags[k] for k in given)}: for image folders only; "
                             f"{args.dataset} is a MedMNIST dataset")
        kwargs = {"verify_md5": not args.allow_md5_mismatch, "download": args.download}
    dataset = load_dataset(args.dataset, size=args.size, root=args.data_root, **kwargs)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, once
        for notice in dataset.notices:
            print(f"{dataset.name}: {notice}")
    ipc = getattr(args, "ipc", None)
    if ipc is not None and getattr(args, "selector", None) != "full":  # a class smaller than the IPC: before any work
        from ..selection import check_ipc

        check_ipc(dataset, ipc)
    return dataset


def _recorded_folder(args, provenance: dict | None, md5: str | None):
    """The image folder a set records it was distilled from, read again with its recorded settings (None for
    a MedMNIST set, or when --dataset names a MedMNIST dataset); --dataset PATH: the folder has moved."""
    from ..data import is_folder_path, reload_image_folder

    if not provenance or provenance.get("kind") != "image_folder":
        return None
    if args.dataset and not is_folder_path(args.dataset):
        return None
    dataset = reload_image_folder(provenance, md5, path=args.dataset, allow_mismatch=args.allow_md5_mismatch)
    for notice in dataset.notices:
        print(f"{dataset.name}: {notice}")
    return dataset


def _eval_config(args, recorded: dict | None = None):
    """EvalConfig from the flags; a flag left out takes the value ``recorded`` (a run's own evaluation
    config in its metrics.json) has, else the protocol's default."""
    from ..evaluate import EvalConfig

    recorded = recorded or {}

    def pick(flag, key, default):
        value = getattr(args, flag)
        return value if value is not None else recorded.get(key, default)

    return EvalConfig(model=args.eval_model, num_models=pick("models", "num_models", 5), epochs=pick("epochs", "epochs", None),
                      seed=pick("seed", "seed", 0), device=args.device,
                      schedule=pick("schedule", "schedule", "published" if not recorded else "half"))


def _write_json(path, payload) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=1))
        print(f"wrote {path}")
