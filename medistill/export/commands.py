"""CLI for sharing: ``medistill export RUN_OR_SET --out DIR``; ``medistill evaluate DIR`` routes packages here."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..atomic_io import atomic_write_text
from .package_reader import is_package, load_package


def add_commands(sub) -> None:
    p = sub.add_parser("export", help="write a self-describing, checksummed package of a distilled set to share")
    p.add_argument("source", help="run folder (runs/...) or ImageSet .pt file")
    p.add_argument("--out", required=True, help="package folder to create")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from .package_writer import export_package

    out = export_package(args.source, args.out, force=args.force)
    meta = load_package(out).metadata
    img = meta["images"]
    print(f"exported {img['count']} images ({meta['method']}, IPC {meta['ipc']}, {meta['source_dataset']['name']}) → {out}")
    for f in sorted(p.name for p in Path(out).iterdir()):
        print(f"  {f}")
    print(f"float pixels {img['float_min']:.3f} … {img['float_max']:.3f}; {100 * img['clipped_fraction']:.2f}% "
          "clipped in the uint8 images; verify with: sha256sum -c MANIFEST.sha256")
    return 0


def evaluate_package_command(path, config, dataset=None, size: int = 28, data_root=None, dsa: bool | None = None,
                             allow_md5_mismatch: bool = False, json_path=None) -> int:
    """``medistill evaluate PACKAGE_DIR``: verify, then re-score on the source dataset's test split with the
    one recipe (``config``: the evaluation flags; ``dsa``: None = as the sending site). ``dataset``: a name,
    a path, or an already loaded :class:`ImageDataset`; None = the one the package records."""
    from ..data import ImageDataset, load_dataset
    from .package_evaluate import evaluate_package

    package = load_package(path)
    print(f"{path}: manifest verified ({len(list(Path(path).iterdir())) - 1} files)")
    meta = package.metadata
    if isinstance(dataset, ImageDataset):  # the caller has loaded it (an image folder read with recorded settings)
        data = dataset
    else:
        name = dataset or meta["source_dataset"].get("name")
        if not name:
            raise ValueError("the package does not record its dataset: pass --dataset")
        data = load_dataset(name, size=size, root=data_root, verify_md5=not allow_md5_mismatch)
    result = evaluate_package(package, data, config, dsa=dsa, allow_md5_mismatch=allow_md5_mismatch)
    cfg = result.config
    print(f"{path} · {meta.get('method')} · IPC {meta.get('ipc')} on {data.name} test split · lr {cfg['lr']:g}"
          f"{' · DSA' if cfg['dsa_strategy'] else ''} · {cfg['epochs']} epochs ({cfg['schedule']} schedule)")
    print("  " + result.line())
    recorded = (meta.get("evaluation") or {}).get("distilled")
    if recorded:
        s, c = recorded["summary"]["accuracy"], recorded["config"]
        print(f"  recorded at export: acc {s['mean']:.3f} ± {s['std']:.3f} ({c['num_models']} models, {c['epochs']} epochs)")
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json_path, json.dumps({"path": str(path), "command": " ".join(sys.argv),
                                                 "recorded": recorded, **result.to_dict()}, indent=1))
        print(f"wrote {json_path}")
    return 0


__all__ = ["add_commands", "evaluate_package_command", "cmd_export", "is_package"]
