"""DSA sample + forward + backward, medistill vs the pure-PyTorch reference, timed in pairs.

bench_dsa.py times all rounds of one implementation, then all rounds of the other; on a shared
2-core machine the load changes between the two and moves the ratio by tens of percent. Here every
round runs the reference and then medistill on the same draws (both generators seeded with the
round's seed), so a burst of load hits both sides of a pair. Reported per case: each side's median
round, the ratio of the medians, and the median and quartiles of the per-round ratios. One thread.

    python -m benchmarks.dsa_paired                       # the bench_dsa.py cases at batch 256
    python -m benchmarks.dsa_paired --batch 10 256 --rounds 60 --json results/bench/dsa_paired.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from benchmarks.dsa_rounds import CALLS, round_strategies
from medistill.ops import dsa, reference, sample_dsa_params


def one_round(fn, x, grad_out, mode: str, seed: int) -> float:
    """Seconds for one bench_dsa.py round (CALLS[mode] calls of sample + fn + backward), drawing from
    a generator seeded with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    B, _, H, W = x.shape
    start = time.perf_counter()
    for strategy, sampler_mode in round_strategies(mode):
        params = sample_dsa_params(B, H, W, strategy=strategy, mode=sampler_mode, generator=gen)
        torch.autograd.grad(fn(x, params), x, grad_out)
    return time.perf_counter() - start


def measure(batch: int, shape: tuple[int, int, int], mode: str, rounds: int) -> dict:
    C, H, W = shape
    x = torch.randn(batch, C, H, W, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    grad_out = torch.randn(batch, C, H, W, generator=torch.Generator().manual_seed(1))
    for seed in range(2):  # warm-up: first-call costs (allocations, constant tables) off the clock
        one_round(reference.dsa, x, grad_out, mode, seed)
        one_round(dsa, x, grad_out, mode, seed)
    ref, ours = [], []
    for r in range(rounds):
        ref.append(one_round(reference.dsa, x, grad_out, mode, 1000 + r))
        ours.append(one_round(dsa, x, grad_out, mode, 1000 + r))
    ratios = sorted(a / b for a, b in zip(ref, ours))
    q1, q2, q3 = statistics.quantiles(ratios, n=4)
    return {"case": f"dsa {mode} sample+fwd+bwd x{CALLS[mode]} {batch}x{C}x{H}x{W}", "rounds": rounds,
            "reference_ms": statistics.median(ref) * 1e3, "medistill_ms": statistics.median(ours) * 1e3,
            "ratio_of_medians": statistics.median(ref) / statistics.median(ours),
            "median_pair_ratio": q2, "pair_ratio_q1": q1, "pair_ratio_q3": q3}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[256])
    parser.add_argument("--modes", nargs="+", default=["S", "S-each", "M"], choices=list(CALLS))
    parser.add_argument("--channels", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    print(f"{'case':40s} {'ref ms':>8s} {'ours ms':>8s} {'ratio':>6s} {'pair ratio (q1-q3)':>20s}")
    for batch in args.batch:
        for C in args.channels:
            for mode in args.modes:
                row = measure(batch, (C, 28, 28), mode, args.rounds)
                rows.append(row)
                print(f"{row['case']:40s} {row['reference_ms']:8.2f} {row['medistill_ms']:8.2f} "
                      f"{row['ratio_of_medians']:5.2f}x {row['median_pair_ratio']:6.2f}x "
                      f"({row['pair_ratio_q1']:.2f}-{row['pair_ratio_q3']:.2f})", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": 1, "torch": torch.__version__, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
