"""Where one eager DSA call's time goes on a GPU: host-side cost of each piece, one call at a time.

Prints medians (µs) of: the draw (``sample_dsa_params``), the op forward, forward + autograd
backward, and the whole step, for medistill and the reference, each followed by a device
synchronise; plus the same step replayed from a CUDA graph. Run on a CUDA machine:

    python -m benchmarks.profile_dsa_host [--batch 256] [--mode S]
"""
import argparse
import statistics
import time

import torch

from medistill.ops import capture_cuda_graph, dsa, reference, sample_dsa_params


def median_us(fn, repeat: int = 200) -> float:
    for _ in range(20):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--mode", default="S", choices=["S", "M"])
    args = parser.parse_args()
    device = torch.device("cuda")
    B, C, H, W = args.batch, args.channels, 28, 28
    x = torch.randn(B, C, H, W, device=device, requires_grad=True)
    g = torch.randn(B, C, H, W, device=device)
    gen = torch.Generator(device=device).manual_seed(0)

    def draw():
        return sample_dsa_params(B, H, W, mode=args.mode, generator=gen, device=device)

    params = draw()
    print(f"device {torch.cuda.get_device_name()}, batch {B}x{C}x{H}x{W}, mode {args.mode}; medians in µs")
    print(f"  empty sync                 {median_us(lambda: None):8.1f}")
    print(f"  draw (sample_dsa_params)   {median_us(draw):8.1f}")
    for name, fn in (("medistill", dsa), ("reference", reference.dsa)):
        print(f"  {name:9s} forward (no grad) {median_us(lambda: fn(x.detach(), params)):8.1f}")
        print(f"  {name:9s} forward + backward {median_us(lambda: torch.autograd.grad(fn(x, params), x, g)):8.1f}")
        print(f"  {name:9s} draw + fwd + bwd   {median_us(lambda: torch.autograd.grad(fn(x, draw()), x, g)):8.1f}")
    graph, _ = capture_cuda_graph(lambda: torch.autograd.grad(dsa(x, draw()), x, g), generator=gen, warmup=3)
    print(f"  medistill draw + fwd + bwd, CUDA graph replay {median_us(graph.replay):8.1f}")


if __name__ == "__main__":
    main()
