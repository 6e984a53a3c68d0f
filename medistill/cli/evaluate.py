"""``medistill evaluate``: re-score a package, a run folder or a .pt set with the one recipe
(:func:`medistill.evaluate.evaluate_set`)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..atomic_io import atomic_write_text
from .common import _add_eval_args, _eval_config, _load, _recorded_folder, _write_json


def add_commands(sub) -> None:
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


def cmd_evaluate(args) -> int:
    """Re-score a package, a run folder or a .pt set with the one recipe (medistill.evaluate.evaluate_set)."""
    from ..data import ImageSet
    from ..data.run_folder import RunFolder
    from ..evaluate import evaluate_set, recipe_config
    from ..export import is_package

    if is_package(args.path):  # a shared package folder (medistill export): verified, then re-scored
        return _evaluate_package(args)
    image_set = ImageSet.load(args.path)
    meta = image_set.metadata
    dataset = _recorded_folder(args, meta.get("dataset_provenance"), meta.get("dataset_md5"))
    if dataset is None:
        name = args.dataset or meta.get("dataset")
        if not name:
            raise ValueError("the set does not record its dataset: pass --dataset")
        args.dataset = name
        dataset = _load(args)
    run = RunFolder(args.path)
    recorded = run.read_metrics() if run.metrics_path.exists() else None  # a run folder's (a .pt file has none)
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


def _evaluate_package(args) -> int:
    """``medistill evaluate PACKAGE_DIR``: verify, then re-score on the source dataset's test split with the
    one recipe (the evaluation flags; --dsa left out: as the sending site). The dataset: --dataset, else the
    one the package records (an image folder: read again with its recorded settings)."""
    from ..data import load_dataset
    from ..export import load_package
    from ..export.package_evaluate import evaluate_package

    path = args.path
    package = load_package(path)
    meta = package.metadata
    source = meta.get("source_dataset") or {}
    data = _recorded_folder(args, source.get("provenance"), source.get("md5"))
    config = _eval_config(args)
    print(f"{path}: manifest verified ({len(list(Path(path).iterdir())) - 1} files)")
    if data is None:
        name = args.dataset or meta["source_dataset"].get("name")
        if not name:
            raise ValueError("the package does not record its dataset: pass --dataset")
        data = load_dataset(name, size=args.size, root=args.data_root, verify_md5=not args.allow_md5_mismatch)
    result = evaluate_package(package, data, config, dsa=args.dsa,
                              allow_md5_mismatch=args.allow_md5_mismatch)
    cfg = result.config
    print(f"{path} · {meta.get('method')} · IPC {meta.get('ipc')} on {data.name} test split · lr {cfg['lr']:g}"
          f"{' · DSA' if cfg['dsa_strategy'] else ''} · {cfg['epochs']} epochs ({cfg['schedule']} schedule)")
    print("  " + result.line())
    recorded = (meta.get("evaluation") or {}).get("distilled")
    if recorded:
        s, c = recorded["summary"]["accuracy"], recorded["config"]
        print(f"  recorded at export: acc {s['mean']:.3f} ± {s['std']:.3f} ({c['num_models']} models, {c['epochs']} epochs)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.json, json.dumps({"path": str(path), "command": " ".join(sys.argv),
                                                 "recorded": recorded, **result.to_dict()}, indent=1))
        print(f"wrote {args.json}")
    return 0
