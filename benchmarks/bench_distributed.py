"""Class-parallel distillation: wall time per iteration with 1 and 2 ranks (torchrun, Gloo, CPU).

Usage (from the repository root):

    python benchmarks/bench_distributed.py --dataset retinamnist --methods dm,dc --ranks 1,2 --ipc 10

For each (method, ranks) it launches ``python -m torch.distributed.run --nproc-per-node R`` on this
file in worker mode. Each rank sets one thread, builds the method on the real dataset with the
``quick`` preset, runs ``--warmup`` iterations, then times ``--iterations`` iterations between two
barriers (so the time covers the slowest rank, and the DC/DSA gathers inside the iterations); rank 0
prints one JSON line. The launcher prints a table: seconds per iteration and speed-up over 1 rank.
Real work on real data; the numbers depend on how busy the machine's cores are (printed too).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def worker(args) -> None:
    import torch

    torch.set_num_threads(1)
    from medistill.data import load_dataset
    from medistill.distributed import barrier, shutdown, start_from_environment
    from medistill.methods import make_config, make_method

    dataset = load_dataset(args.dataset, root=args.data_root)
    ctx = start_from_environment(300, "cpu", num_classes=dataset.num_classes)
    config = make_config(args.method, args.ipc, "quick", seed=0)
    method = make_method(args.method, dataset, config, dist=ctx)
    for _ in range(args.warmup):
        method.step()
    barrier(ctx, "benchmark start")
    started = time.perf_counter()
    for _ in range(args.iterations):
        method.step()
    barrier(ctx, "benchmark end")
    seconds = (time.perf_counter() - started) / args.iterations
    if ctx.is_main:
        print(json.dumps({"method": args.method, "ranks": ctx.world_size, "s_per_iteration": seconds,
                          "classes_on_rank0": len(method.classes)}), flush=True)
    shutdown(ctx)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args) -> None:
    rows = []
    for method in args.methods.split(","):
        for ranks in [int(r) for r in args.ranks.split(",")]:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(ranks), "--master-addr",
                   "127.0.0.1", "--master-port", str(_free_port()), str(Path(__file__).resolve()), "--worker",
                   "--method", method, "--dataset", args.dataset, "--ipc", str(args.ipc),
                   "--iterations", str(args.iterations), "--warmup", str(args.warmup)]
            if args.data_root:
                cmd += ["--data-root", args.data_root]
            env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
            load = os.getloadavg()[0]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
            if out.returncode != 0:
                sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
            row = json.loads([l for l in out.stdout.splitlines() if l.startswith("{")][-1])
            row["load_before"] = load
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{args.dataset}, quick preset, IPC {args.ipc}, {args.iterations} timed iteration(s) after "
          f"{args.warmup} warm-up, 1 thread per rank, Gloo on CPU ({os.cpu_count()} cores)")
    print(f"{'method':8s} {'ranks':>5s} {'s/iteration':>12s} {'speed-up':>9s} {'load avg before':>16s}")
    for row in rows:
        base = next(r for r in rows if r["method"] == row["method"] and r["ranks"] == 1)["s_per_iteration"]
        print(f"{row['method']:8s} {row['ranks']:5d} {row['s_per_iteration']:12.3f} "
              f"{base / row['s_per_iteration']:8.2f}x {row['load_before']:16.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--dataset", default="retinamnist")
    p.add_argument("--data-root", default=os.environ.get("MEDISTILL_DATA"))
    p.add_argument("--methods", default="dm,dc")
    p.add_argument("--method", default="dm", help=argparse.SUPPRESS)
    p.add_argument("--ranks", default="1,2")
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    args = p.parse_args()
    worker(args) if args.worker else launch(args)


if __name__ == "__main__":
    main()
