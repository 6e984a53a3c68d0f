"""``medistill distill``: distil a dataset with DC, DSA, DM or MTT, evaluate the set, write a run folder."""
from __future__ import annotations

from pathlib import Path

import torch

from ..data.run_folder import run_name
from .common import DEFAULT_RUNS, _add_data_args, _add_dist_args, _load


def add_commands(sub) -> None:
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


def _method_config(args):
    """The method's config from --method/--ipc/--preset/--iterations/--set/--experts/--seed, every setting
    checked (known keys, types, counts ≥ 1, finite learning rates) before any data is read or file written."""
    from ..methods import CONFIGS, make_config, parse_override
    from ..methods.config import check_learning_rates

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


def cmd_distill(args) -> int:
    from ..distributed import shutdown, start_from_environment

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
    from ..evaluate import EvalConfig

    if args.eval_models == 0:
        return None
    quick = args.preset == "quick"
    return EvalConfig(model=args.eval_model, num_models=args.eval_models,
                      epochs=args.eval_epochs if args.eval_epochs is not None else (300 if quick else None),
                      seed=args.seed, device=args.device)


def _distill(args, dataset, config, dist) -> int:
    from ..methods import distill

    out = Path(args.out or Path(DEFAULT_RUNS) / run_name(dataset.name, args.method, args.ipc, args.preset, args.seed))
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
