"""Where one eager DSA call's time goes, piece by piece, and the floor torch itself sets.

Prints medians (µs) of: the draw (``sample_dsa_params``), the op forward, forward + autograd
backward, and the whole step, for medistill and the reference, each followed by a device
synchronise (none on CPU); on CUDA, the same step replayed from a CUDA graph. Then the floor: the
cheapest differentiable call on the same tensors through the same ``torch.autograd.grad``
(``x * 2``: one elementwise kernel each way, the same bytes read and written as any op of this
shape), with and without the draw. ``reference / floor`` bounds the speedup any eager
implementation can show in ``bench_dsa.py``'s loop. Run (one thread on CPU, as the benchmarks):

    python -m benchmarks.profile_dsa_host [--device cuda] [--batch 256] [--channels 3] [--mode S]
"""
import argparse
import statistics
import time

import torch

from medistill.ops import capture_cuda_graph, dsa, reference, sample_dsa_params


def median_us(fn, device: torch.device, repeat: int = 200) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(20):
        fn()
    sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--mode", default="S", choices=["S", "M"])
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)
    B, C, H, W = args.batch, args.channels, 28, 28
    x = torch.randn(B, C, H, W, device=device, requires_grad=True)
    g = torch.randn(B, C, H, W, device=device)
    gen = torch.Generator(device=device).manual_seed(0)

    def draw():
        return sample_dsa_params(B, H, W, mode=args.mode, generator=gen, device=device)

    def us(fn):
        return median_us(fn, device)

    params = draw()
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} thread(s)"
    print(f"device {name}, batch {B}x{C}x{H}x{W}, mode {args.mode}; medians in µs")
    print(f"  empty (sync)               {us(lambda: None):8.1f}")
    print(f"  draw (sample_dsa_params)   {us(draw):8.1f}")
    whole = {}
    for impl, fn in (("medistill", dsa), ("reference", reference.dsa)):
        print(f"  {impl:9s} forward (no grad) {us(lambda: fn(x.detach(), params)):8.1f}")
        print(f"  {impl:9s} forward + backward {us(lambda: torch.autograd.grad(fn(x, params), x, g)):8.1f}")
        whole[impl] = us(lambda: torch.autograd.grad(fn(x, draw()), x, g))
        print(f"  {impl:9s} draw + fwd + bwd   {whole[impl]:8.1f}")
    floor = us(lambda: torch.autograd.grad(x * 2, x, g))
    floor_draw = us(lambda: (draw(), torch.autograd.grad(x * 2, x, g)))
    print(f"  floor: autograd.grad(x * 2)          {floor:8.1f}")
    print(f"  floor + draw                         {floor_draw:8.1f}")
    print(f"  reference / medistill                {whole['reference'] / whole['medistill']:8.2f}x")
    print(f"  reference / (floor + draw): ceiling  {whole['reference'] / floor_draw:8.2f}x")
    if device.type == "cuda":
        graph, _ = capture_cuda_graph(lambda: torch.autograd.grad(dsa(x, draw()), x, g), generator=gen, warmup=3)
        print(f"  medistill draw + fwd + bwd, CUDA graph replay {us(graph.replay):8.1f}")


if __name__ == "__main__":
    main()
