"""``medistill info``: the build (compiled ops, CUDA kernels) and the datasets found."""
from __future__ import annotations

from .common import _write_json


def add_commands(sub) -> None:
    p = sub.add_parser("info", help="datasets found, build info, CUDA kernels on/off")
    p.add_argument("--data-root", default=None)
    p.add_argument("--json", default=None)
    p.set_defaults(func=cmd_info)


def cmd_info(args) -> int:
    from ..ops import build_info
    from ..version import __version__
    from ..data import dataset_names, default_root, locate
    from ..data.errors import DataError
    from ..data.medmnist_files import SIZES, file_name

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
