"""``medistill audit RUN_OR_SET [--out DIR]``: nearest real images, flags, membership inference, report."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from ..atomic_io import atomic_write_text


def add_commands(sub) -> None:
    p = sub.add_parser("audit", help="privacy audit: does any synthetic image reproduce a real training image?")
    p.add_argument("source", help="run folder (runs/...), ImageSet .pt file, or exported package folder")
    p.add_argument("--out", default=None, help="report folder (default: <run folder>/audit or <file stem>-audit)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--allow-md5-mismatch", action="store_true")
    p.add_argument("--k", type=int, default=3, help="nearest real images kept per synthetic image")
    p.add_argument("--quantile", type=float, default=0.01,
                   help="flag below this quantile of real-to-real nearest-neighbour distances (default 0.01)")
    p.add_argument("--embed-epochs", type=int, default=10, help="epochs of the embedding ConvNet on the real train split")
    p.add_argument("--max-reference", type=int, default=2000, help="real images sampled for the real-to-real distribution")
    p.add_argument("--mia-models", type=int, default=2, help="networks trained on the set for the membership attack (0: skip)")
    p.add_argument("--mia-epochs", type=int, default=100)
    p.add_argument("--cache", default=None, help="folder to keep the real-data side (embedding net, real-to-real "
                   "distances) for the next audit of the same dataset")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", default=None, help="also write the summary JSON here (e.g. results/audit/<name>.json)")
    p.set_defaults(func=cmd_audit)


def _load_set(source: str):
    """(ImageSet, name) of an exported package folder, a run folder or a .pt set."""
    from ..export import is_package, load_package
    from ..export.run_source import load_run_source

    if is_package(source):
        return load_package(source).image_set, Path(source).name
    run = load_run_source(source)
    return run.image_set, run.name


def cmd_audit(args) -> int:
    from ..audit.membership import MembershipConfig
    from ..audit.privacy_audit import AuditConfig, run_audit
    from ..audit.report import write_report
    from ..data import load_dataset

    image_set, name = _load_set(args.source)
    dataset_name = image_set.metadata.get("dataset")
    if not dataset_name:
        raise ValueError(f"{args.source} does not record its dataset; the audit needs the real training split")
    dataset = load_dataset(dataset_name, root=args.data_root, verify_md5=not args.allow_md5_mismatch)
    if not 0 < args.quantile < 0.5:
        raise ValueError(f"--quantile must be in (0, 0.5), got {args.quantile}")
    membership = (MembershipConfig(num_models=args.mia_models, epochs=args.mia_epochs, seed=args.seed)
                  if args.mia_models > 0 else None)
    config = AuditConfig(k=args.k, quantile=args.quantile, embed_epochs=args.embed_epochs, seed=args.seed,
                         max_reference_queries=args.max_reference, membership=membership, device=args.device,
                         cache_dir=args.cache)
    result = run_audit(image_set, dataset, config)
    src = Path(args.source)
    out = Path(args.out) if args.out else (src / "audit" if src.is_dir() else src.with_name(f"{src.stem}-audit"))
    report = write_report(out, result)
    s = result.summary
    px, mi = s["spaces"]["pixel_l2"], s["membership_inference"]
    print(f"{name}: {s['set']['images']} images vs {s['real_train_images']} real training images of {dataset.name}")
    print(f"  flagged (pixel L2): {s['flagged']}{' → ' + str(s['flagged_indices']) if s['flagged'] else ''}; "
          f"embedding: {s['spaces']['embedding_l2']['flagged']}; SSIM: {s['spaces']['ssim']['flagged']}")
    print(f"  NN pixel distance median: synthetic→real {px['synthetic_nn_median']:.3f} vs real→real "
          f"{px['real_nn_median']:.3f} (ratio {px['median_ratio']:.3f}; threshold {px['threshold']:.3f})")
    if s.get("privacy"):  # the formal guarantee of a DP-DM set, beside the empirical checks
        from ..privacy import privacy_line

        print(f"  {privacy_line(s['privacy'])}")
    if mi:
        print(f"  membership attack AUC {mi['attack_auc']:.3f} (targeted {mi['targeted_attack_auc']:.3f}; 0.5 = no leak)")
    print(f"report: {report}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.json, json.dumps({"name": name, "source": str(args.source), "command": " ".join(sys.argv),
                                                 **s, "per_image": result.per_image}, indent=1))
        print(f"wrote {args.json}")
    return 0
