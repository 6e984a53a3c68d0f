"""Where one method step's time goes on a GPU: wall time against summed kernel time, and the top kernels.

A step whose wall time is far above its kernel time is host-bound (Python, dispatch, autograd,
launches); one close to it is GPU-bound. Same generated data and settings as
``bench_methods.py`` (10 classes, 256 real images each, IPC 10), medistill's side only, with the
CLI's ``cudnn.benchmark``. Run on a CUDA machine:

    python -m benchmarks.profile_methods_cuda [--cases dm dc-vmap dc-loop dsa-vmap] [--top 8]

(``--device cpu --batch-real 8`` checks the script itself on a machine without a GPU.)
"""
import argparse
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.conftest import synchronize
from benchmarks.generated_classes import generated_classes
from medistill.methods import make_config, make_method

CASES = {
    "dm": ("dm", {}),
    "dm-bf16": ("dm", {"amp": "bf16"}),
    "dc-vmap": ("dc", {"class_batching": "vmap"}),
    "dc-loop": ("dc", {"class_batching": "loop"}),
    "dsa-vmap": ("dsa", {"class_batching": "vmap"}),
    "dsa-loop": ("dsa", {"class_batching": "loop"}),
}


def step_of(method):
    """DM: one iteration; DC/DSA: one outer step on one fresh network."""
    if method.name == "dm":
        return method.step
    net = method.sample_network()
    params = list(net.parameters())
    return lambda: method.outer_step(net, params)


def wall_ms(step, device: str, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        synchronize(device)
        t0 = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["dm", "dc-vmap", "dc-loop", "dsa-vmap"], choices=list(CASES))
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-real", type=int, default=256)
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True
    data = generated_classes()
    for case in args.cases:
        name, overrides = CASES[case]
        method = make_method(name, data, make_config(name, 10, batch_real=args.batch_real, **overrides),
                             device=args.device)
        step = step_of(method)
        for _ in range(2):
            step()
        wall = wall_ms(step, args.device)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
        with profile(activities=activities) as prof:
            step()
            synchronize(args.device)
        kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        busy_ms = sum(e.time_range.elapsed_us() for e in kernels) / 1e3
        ops = sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CPU and e.cpu_parent is None)
        print(f"== {case}: wall {wall:.1f} ms (median of 5, no profiler); top-level CPU ops {ops}; kernels {len(kernels)}, "
              f"summed kernel time {busy_ms:.1f} ms ({100 * busy_ms / wall:.0f}% of wall)")
        print(prof.key_averages().table(sort_by="self_device_time_total", row_limit=args.top, max_name_column_width=60))


if __name__ == "__main__":
    main()
