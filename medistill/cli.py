"""The ``medistill`` command line: the only layer that parses arguments or prints tables."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
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


def _load(args):
    from .data import is_folder_path, load_dataset

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
        from .selection import check_ipc

        check_ipc(dataset, ipc)
    return dataset


def _recorded_folder(args, provenance: dict | None, md5: str | None):
    """The image folder a set records it was distilled from, read again with its recorded settings (None for
    a MedMNIST set, or when --dataset names a MedMNIST dataset); --dataset PATH: the folder has moved."""
    from .data import is_folder_path, reload_image_folder

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
    from .evaluate import EvalConfig

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


def cmd_info(args) -> int:
    from . import __version__, build_info
    from .data import dataset_names, default_root, locate
    from .data.errors import DataError
    from .data.medmnist_files import SIZES, file_name

    info = build_info()
    print(f"medistill {__version__}  torch {info['runtime_torch']}  (CUDA runtime {info['runtime_cuda']})")
    print(f"compiled ops:  {'loaded' if info['ops_loaded'] else 'NOT loaded — pure-PyTorch fallback'}")
    if info["load_error"]:
        print(f"  why: {info['load_error']}")
    print(f"CPU kernels:   {'on' if info['cpu_kernels'] else 'off'}")
    print(f"CUDA kernels:  {'compiled' if info['cuda_kernels_compiled'] else 'not compiled'}"
          f" ({info['cuda_decision']}; archs {info['cuda_arch_list']})")
    print(f"CUDA device:   {'available' if info['cuda_device_available'] else 'none'}")
    print(f"built against: torch {info['built_with_torch']}, CUDA {info['built_with_cuda']}")
    root = default_root(args.data_root)
    print(f"data root:     {root}")
    for name in dataset_names():  # every size medmnist publishes: <name>.npz at 28 px, <name>_<size>.npz otherwise
        sizes = [s for s in SIZES if (root / file_name(name, s)).exists()]
        try:
            where = str(locate(name, 28, args.data_root))
        except DataError:
            where = f"{', '.join(map(str, sizes))} px in {root}" if sizes else None
        others = [s for s in sizes if s != 28] if 28 in sizes else []
        also = f"  (also {', '.join(map(str, others))} px)" if others else ""
        print(f"  {name:16s} found  {where}{also}" if where else f"  {name:16s} missing")
    _write_json(args.json, info)
    return 0


def _print_random_baseline(baseline: dict, indent: str = "  ") -> None:
    from .evaluate import result_line

    s = baseline["subsets"]
    print(f"{indent}over {baseline['num_subsets']} random subsets (mean ± spread of the subsets' means): "
          + " | ".join(f"{m} {s[m]['mean']:.3f} ± {s[m]['std']:.3f}" for m in s))
    for k, sub in enumerate(baseline["per_subset"]):
        print(f"{indent}  subset {k} (seed {sub['subset_seed']}): "
              f"{result_line(sub['summary'], len(sub['per_model']), sub['majority_rate'])}")
    print(f"{indent}all networks pooled: "
          f"{result_line(baseline['summary'], len(baseline['summary']['accuracy']['values']), baseline['majority_rate'])}")


def cmd_baseline(args) -> int:
    from .evaluate import evaluate_set
    from .selection import random_baseline, select
    from .selection.random_scores import subset_seed

    dataset = _load(args)
    started = time.time()
    config = _eval_config(args)
    ipc = None if args.selector == "full" else args.ipc
    if args.selector == "random":
        from .evaluate import recipe_config

        subset = select(dataset, "random", ipc, seed=subset_seed(config.seed, 0))
        config = recipe_config(subset.metadata, None, config, dsa=args.dsa)
        result = random_baseline(dataset, ipc, config, subsets=args.subsets, progress=True)
        print(f"{dataset.name} · random, IPC {ipc} · {len(subset.labels)} images per subset · "
              f"{result['config']['epochs']} epochs{' with DSA' if config.uses_dsa else ''}")
        _print_random_baseline(result)
    else:
        subset = select(dataset, args.selector, ipc, seed=config.seed)
        result = evaluate_set(subset, dataset, config, dsa=args.dsa, desc=f"{args.selector} ipc {ipc}").to_dict()
        label = "full" if args.selector == "full" else f"{args.selector}, IPC {ipc}"
        print(f"{dataset.name} · {label} · {len(subset.labels)} images · {result['config']['epochs']} epochs"
              f"{' with DSA' if result['config']['dsa_strategy'] else ''}")
        from .evaluate import result_line

        print("  " + result_line(result["summary"], len(result["per_model"]), result["majority_rate"]))
    payload = {"dataset": dataset.name, "selector": args.selector, "ipc": ipc, "images": len(subset.labels),
               "seconds": round(time.time() - started, 1), "command": " ".join(sys.argv), **result}
    _write_json(args.json, payload)
    if args.save:
        path = subset.save(args.save)
        print(f"saved the selected set to {path}")
    return 0


def cmd_evaluate(args) -> int:
    """Re-score a package, a run folder or a .pt set with the one recipe (medistill.evaluate.evaluate_set)."""
    from .data import ImageSet
    from .evaluate import evaluate_set, recipe_config
    from .export.commands import evaluate_package_command, is_package

    if is_package(args.path):  # a shared package folder (medistill export): verified, then re-scored
        from .export import load_package

        source = load_package(args.path).metadata.get("source_dataset") or {}
        folder = _recorded_folder(args, source.get("provenance"), source.get("md5"))
        return evaluate_package_command(args.path, _eval_config(args), dataset=folder or args.dataset,
                                        size=args.size, data_root=args.data_root, dsa=args.dsa,
                                        allow_md5_mismatch=args.allow_md5_mismatch, json_path=args.json)
    image_set = ImageSet.load(args.path)
    meta = image_set.metadata
    dataset = _recorded_folder(args, meta.get("dataset_provenance"), meta.get("dataset_md5"))
    if dataset is None:
        name = args.dataset or meta.get("dataset")
        if not name:
            raise ValueError("the set does not record its dataset: pass --dataset")
        args.dataset = name
        dataset = _load(args)
    run_metrics = Path(args.path) / "metrics.json"
    recorded = json.loads(run_metrics.read_text()) if Path(args.path).is_dir() and run_metrics.exists() else None
    config = _eval_config(args, (recorded or {}).get("distilled", {}).get("config"))
    result = evaluate_set(image_set, dataset, config, dsa=args.dsa)
    cfg = recipe_config(meta, image_set.learned_lr, config, args.dsa)
    zca = f" · test split ZCA-whitened ({image_set.zca.fingerprint})" if image_set.zca is not None else ""
    print(f"{args.path} · {meta.get('method')} · IPC {meta.get('ipc')} on {dataset.name} · lr {cfg.lr:g} · "
          f"{result.config['epochs']} epochs{' with DSA' if cfg.uses_dsa else ''} ({cfg.schedule} schedule){zca}")
    print("  " + result.line())
    if recorded is not None:
        s, c = recorded["distilled"]["summary"]["accuracy"], recorded["distilled"]["config"]
        same = all(c.get(k) == v for k, v in result.config.items() if k not in ("device",))
        print(f"  recorded by the run: acc {s['mean']:.3f} ± {s['std']:.3f} ({c['num_models']} models, {c['epochs']} "
              f"epochs{', the same settings' if same else ', other settings'})")
    _write_json(args.json, {"path": str(args.path), "command": " ".join(sys.argv),
                            "zca": image_set.zca.describe() if image_set.zca is not None else None, **result.to_dict()})
    return 0


def _method_config(args):
    """The method's config from --method/--ipc/--preset/--iterations/--set/--experts/--seed, every setting
    checked (known keys, types, counts ≥ 1, finite learning rates) before any data is read or file written."""
    from .methods import CONFIGS, make_config, parse_override
    from .methods.config import check_learning_rates

    if args.method not in CONFIGS:
        raise ValueError(f"unknown method {args.method!r}; choose one of {', '.join(CONFIGS)}")
    overrides = dict(parse_override(text, CONFIGS[args.method], args.method) for text in args.set)
    if args.iterations is not None:
        overrides["iterations"] = args.iterations
    if args.experts is not None:
        overrides["expert_dir"] = args.experts
    dp = {key: getattr(args, key) for key in ("dp_epsilon", "dp_delta", "dp_clip", "dp_sample_rate")
          if getattr(args, key, None) is not None}
    if (dp or any(k.startswith("dp_") for k in overrides)) and args.method != "dm":
        raise ValueError(f"--dp-epsilon/--dp-*: differentially private distillation is DM only (--method dm), "
                         f"not {args.method}")
    overrides.update(dp)  # the same settings as --set dp_epsilon=… (docs/privacy.md)
    overrides["seed"] = args.seed
    config = make_config(args.method, args.ipc, args.preset, **overrides)
    check_learning_rates(config)
    return config


def _check_device(value: str) -> None:
    """ValueError (one line: what was asked, what this machine has) unless ``value`` names a usable device."""
    if torch.cuda.is_available():
        names = ", ".join(f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count()))
        here = f"this machine has cpu and {names}"
    elif torch.version.cuda is None:
        here = "this machine has cpu only (this torch build has no CUDA support)"
    else:
        here = f"this machine has cpu only (torch built with CUDA {torch.version.cuda} finds no NVIDIA GPU or driver)"
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {value!r} is not a device: use cpu, cuda or cuda:N; {here}") from None
    if device.type == "cpu":
        return
    if device.type != "cuda":
        raise ValueError(f"--device {value}: medistill runs on cpu or cuda, not {device.type}; {here}")
    if not torch.cuda.is_available():
        raise ValueError(f"--device {value}: no CUDA device is usable; {here}: use --device cpu")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {value}: no such GPU; {here}")


# Counts the commands take, checked before any work: flag → (destination, smallest value).
_COUNT_FLAGS = {"--models": ("models", 1), "--epochs": ("epochs", 1), "--subsets": ("subsets", 1),
                "--ipc": ("ipc", 1), "--threads": ("threads", 1), "--eval-models": ("eval_models", 0),
                "--eval-epochs": ("eval_epochs", 1), "--random-subsets": ("random_subsets", 1),
                "--stop-after": ("stop_after", 1), "--iterations": ("iterations", 1),
                "--num-experts": ("num_experts", 1), "--size": ("size", 1)}
_COUNTED_COMMANDS = ("baseline", "evaluate", "distill", "experts")


def _check_counts(args) -> None:
    """ValueError naming the flag when a count of baseline/evaluate/distill/experts is too small (e.g. --models 0)."""
    if args.command not in _COUNTED_COMMANDS:
        return
    for flag, (dest, least) in _COUNT_FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None and value < least:
            skip = " (0: do not evaluate)" if dest == "eval_models" else ""
            raise ValueError(f"{flag} {value}: must be at least {least}{skip}")
    for flag, dest in (("--lr", "lr"), ("--dist-timeout", "dist_timeout")):
        value = getattr(args, dest, None)
        if value is not None and not (value > 0 and value != float("inf")):
            raise ValueError(f"{flag} {value}: must be a finite number above 0")


def _add_dist_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dist-timeout", type=float, default=300.0, metavar="SECONDS",
                   help="under torchrun: how long a rank waits for the others at a collective before it stops "
                        "with an error (a dead or hung rank)")


def cmd_distill(args) -> int:
    from .distributed import shutdown, start_from_environment

    if args.resume and args.resume_or_start:
        raise ValueError("--resume and --resume-or-start: pass one (--resume needs a run to continue, "
                         "--resume-or-start starts one when --out holds none)")
    if args.force and (args.resume or args.resume_or_start):
        raise ValueError("--force contradicts --resume: --force deletes the run in --out and starts over, "
                         "--resume continues it; pass one")
    config = _method_config(args)  # every setting checked before the data is read or any file written
    _distill_eval_config(args)
    dataset = _load(args)
    dist = start_from_environment(args.dist_timeout, args.device, num_classes=dataset.num_classes)
    try:
        return _distill(args, dataset, config, dist)
    finally:
        shutdown(dist)


def _distill_eval_config(args):
    """The evaluation at the end of a distillation (None with --eval-models 0: not evaluated)."""
    from .evaluate import EvalConfig

    if args.eval_models == 0:
        return None
    quick = args.preset == "quick"
    return EvalConfig(model=args.eval_model, num_models=args.eval_models,
                      epochs=args.eval_epochs if args.eval_epochs is not None else (300 if quick else None),
                      seed=args.seed, device=args.device)


def _distill(args, dataset, config, dist) -> int:
    from .methods import distill

    out = Path(args.out or Path(DEFAULT_RUNS) / f"{dataset.name}-{args.method}-ipc{args.ipc}-{args.preset}-s{args.seed}")
    eval_config = _distill_eval_config(args)
    if dist.is_main:
        ranks = f" on {dist.world_size} ranks ({dist.backend})" if dist.is_distributed else ""
        print(f"distilling {dataset.name} ({len(dataset.train_labels)} train images, {dataset.num_classes} classes) "
              f"with {args.method.upper()} at IPC {args.ipc}, preset {args.preset}{ranks} → {out}")
    result = distill(dataset, args.method, config, out, resume=args.resume or args.resume_or_start, force=args.force,
                     device=dist.device, eval_config=eval_config, stop_after=args.stop_after, dist=dist,
                     random_subsets=args.random_subsets, require_existing=args.resume)
    print(result.summary, end="")
    return 0


def cmd_experts(args) -> int:
    from .distributed import shutdown, start_from_environment

    dataset = _load(args)
    dist = start_from_environment(args.dist_timeout, args.device)
    try:
        return _experts(args, dataset, dist)
    finally:
        shutdown(dist)


def _experts(args, dataset, dist) -> int:
    from tqdm.auto import tqdm

    from .distributed import expert_shard, leave_together
    from .methods import ExpertConfig, build_experts

    config = ExpertConfig(num_experts=args.num_experts, epochs=args.epochs, lr=args.lr, seed=args.seed,
                          model=args.model, dtype=args.dtype, zca=args.zca)
    zca = "-zca" if args.zca else ""
    out = Path(args.out or Path("experts") / f"{dataset.name}-{args.model}-e{args.epochs}-s{args.seed}{zca}")
    param_bytes = 4 if args.dtype == "float32" else 2
    from .models import build_model

    params = sum(p.numel() for p in build_model(args.model, dataset.channels, dataset.num_classes,
                                                dataset.image_size).parameters())
    mine = expert_shard(args.num_experts, dist.rank, dist.world_size)
    if dist.is_main:
        ranks = f" on {dist.world_size} ranks, {len(mine)} on rank 0" if dist.is_distributed else ""
        print(f"training {args.num_experts} experts × {args.epochs} epochs on {dataset.name}{ranks} → {out} "
              f"({(args.epochs + 1) * params * param_bytes / 2**20:.1f} MiB per expert, {args.dtype}"
              f"{', ZCA-whitened images' if args.zca else ''})")
    bar = tqdm(total=len(mine), desc="experts", unit="expert", disable=not dist.is_main)
    build_experts(dataset, config, out, device=dist.device, on_expert=lambda _: bar.update(1), dist=dist)
    bar.close()
    leave_together(dist, "leaving the process group after the expert bank")
    if dist.is_distributed:
        print(f"rank {dist.rank}: experts {mine} ready in {out}; every rank has finished its share, the bank is complete")
    else:
        print(f"expert bank ready: {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medistill", description="Dataset distillation for medical images.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="datasets found, build info, CUDA kernels on/off")
    p.add_argument("--data-root", default=None)
    p.add_argument("--json", default=None)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("baseline", help="score a real-data baseline (random, herding, kcenter, full)")
    _add_data_args(p)
    p.add_argument("--selector", default="random", choices=["random", "herding", "kcenter", "full"])
    p.add_argument("--ipc", type=int, default=10, help="images per class (ignored for full)")
    p.add_argument("--subsets", type=int, default=5,
                   help="random: how many random subsets R are scored (the spread over subsets is reported)")
    p.add_argument("--save", default=None, help="save the selected set (.pt) here (random: the first subset)")
    _add_eval_args(p)
    p.set_defaults(func=cmd_baseline)

    p = sub.add_parser("evaluate", help="re-score a saved image set (.pt file or run folder)")
    p.add_argument("path")
    p.add_argument("--dataset", default=None,
                   help="override the dataset recorded in the set (a set from an image folder: the folder is read "
                        "again with its recorded settings; pass its PATH if it has moved)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--allow-md5-mismatch", action="store_true")
    p.add_argument("--download", action="store_true")
    _add_eval_args(p, default_models=None, default_seed=None)  # a run folder's own settings when left out
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("distill", help="distil a dataset with DC, DSA, DM or MTT, evaluate it, write a run folder")
    _add_data_args(p)
    p.add_argument("--method", required=True, help="dc, dsa, dm or mtt")
    p.add_argument("--ipc", type=int, default=10, help="synthetic images per class")
    p.add_argument("--preset", default="paper", help="paper (published budgets) or quick (minutes on a CPU)")
    p.add_argument("--iterations", type=int, default=None, help="override the preset's iteration count")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any method setting")
    p.add_argument("--experts", default=None, help="MTT: expert bank folder (from `medistill experts`)")
    private = p.add_argument_group("differential privacy (DM only; docs/privacy.md; needs pip install 'medistill[dp]')")
    private.add_argument("--dp-epsilon", type=float, default=None, metavar="E",
                         help="distil with (E, δ)-differential privacy for the training images (DP-DM; init noise)")
    private.add_argument("--dp-delta", type=float, default=None, metavar="D", help="δ (default 1/(10·N), N training images)")
    private.add_argument("--dp-clip", type=float, default=None, metavar="C",
                         help="per-image L2 clip of the embedding (default 20)")
    private.add_argument("--dp-sample-rate", type=float, default=None, metavar="Q",
                         help="Poisson sampling rate per image and iteration (default min(1, K·batch_real/N))")
    p.add_argument("--out", default=None, help="run folder (default runs/<dataset>-<method>-ipc<K>-<preset>-s<seed>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint (an error when --out holds no run)")
    p.add_argument("--resume-or-start", action="store_true",
                   help="continue the run in --out if there is one, else start it")
    p.add_argument("--force", action="store_true", help="start over even if --out holds a run")
    p.add_argument("--eval-models", type=int, default=3, help="networks trained to score the set (0: skip)")
    p.add_argument("--eval-epochs", type=int, default=None, help="epochs per evaluation network (quick: 300)")
    p.add_argument("--eval-model", default="convnet")
    p.add_argument("--random-subsets", type=int, default=5,
                   help="R random real subsets scored next to the set in metrics.json (shared by runs with the same "
                        "settings)")
    p.add_argument("--stop-after", type=int, default=None, help="stop after this many iterations (resumable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    _add_dist_args(p)
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("experts", help="train MTT expert trajectories into a reusable bank")
    _add_data_args(p)
    p.add_argument("--num-experts", type=int, default=100)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--model", default="convnet")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    p.add_argument("--zca", action="store_true", help="train on ZCA-whitened images (eps 0.1; for MTT with zca=true)")
    p.add_argument("--out", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    _add_dist_args(p)
    p.set_defaults(func=cmd_experts)
    # study, predict, report; export; audit: each area's subcommands live in medistill/<area>/commands.py
    for area in ("study", "export", "audit"):
        __import__(f"medistill.{area}.commands", fromlist=["add_commands"]).add_commands(sub)
    return parser


def _show_notice(command: str):
    """warnings.showwarning that prints the library's notices (a stale run-folder lock taken over) as one line."""
    from .run_lock import StaleLockNotice

    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, StaleLockNotice):
            print(f"medistill {command}: notice: {message}", file=sys.stderr)
        else:
            original(message, category, filename, lineno, file, line)

    return show


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .data.errors import DataError
    from .run_lock import StaleLockNotice

    try:  # flags checked before any work: the device asked for, counts
        if getattr(args, "device", None) is not None:
            _check_device(str(args.device))
        _check_counts(args)
    except ValueError as exc:
        print(f"medistill {args.command}: error: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    if str(getattr(args, "device", "cpu")).startswith("cpu"):
        from .cpu_allocator import keep_freed_memory

        keep_freed_memory()  # large activations are not page-faulted in again every pass
    else:
        torch.backends.cudnn.benchmark = True  # a run's network shapes are fixed: pick each conv's fastest algorithm once
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", StaleLockNotice)
            warnings.showwarning = _show_notice(args.command)
            return args.func(args)
    except (DataError, ValueError) as exc:  # RunFolderError, FolderInUse, DivergenceError: ValueErrors
        print(f"medistill {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path that cannot be made, read or written (permissions, a full disk, …)
        print(f"medistill {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
