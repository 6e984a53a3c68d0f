"""``medistill experts``: train MTT expert trajectories into a reusable bank."""
from __future__ import annotations

from pathlib import Path

import torch

from .common import _add_data_args, _add_dist_args, _load


def add_commands(sub) -> None:
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


def cmd_experts(args) -> int:
    from ..distributed import shutdown, start_from_environment

    dataset = _load(args)
    dist = start_from_environment(args.dist_timeout, args.device)
    try:
        return _experts(args, dataset, dist)
    finally:
        shutdown(dist)


def _experts(args, dataset, dist) -> int:
    from tqdm.auto import tqdm

    from ..distributed import expert_shard, leave_together
    from ..methods import ExpertConfig, build_experts

    config = ExpertConfig(num_experts=args.num_experts, epochs=args.epochs, lr=args.lr, seed=args.seed,
                          model=args.model, dtype=args.dtype, zca=args.zca)
    zca = "-zca" if args.zca else ""
    out = Path(args.out or Path("experts") / f"{dataset.name}-{args.model}-e{args.epochs}-s{args.seed}{zca}")
    param_bytes = 4 if args.dtype == "float32" else 2
    from ..models import build_model

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
