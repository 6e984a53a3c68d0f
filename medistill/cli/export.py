"""``medistill export RUN_OR_SET --out DIR``: a self-describing, checksummed package of a distilled set to share
(``medistill evaluate DIR`` re-scores one: :mod:`medistill.cli.evaluate`)."""
from __future__ import annotations

from pathlib import Path


def add_commands(sub) -> None:
    p = sub.add_parser("export", help="write a self-describing, checksummed package of a distilled set to share")
    p.add_argument("source", help="run folder (runs/...) or ImageSet .pt file")
    p.add_argument("--out", required=True, help="package folder to create")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from ..export import export_package, load_package

    out = export_package(args.source, args.out, force=args.force)
    meta = load_package(out).metadata
    img = meta["images"]
    print(f"exported {img['count']} images ({meta['method']}, IPC {meta['ipc']}, {meta['source_dataset']['name']}) → {out}")
    for f in sorted(p.name for p in Path(out).iterdir()):
        print(f"  {f}")
    print(f"float pixels {img['float_min']:.3f} … {img['float_max']:.3f}; {100 * img['clipped_fraction']:.2f}% "
          "clipped in the uint8 images; verify with: sha256sum -c MANIFEST.sha256")
    return 0
