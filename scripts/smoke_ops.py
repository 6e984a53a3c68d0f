"""Smoke test of an installed medistill: every op of ``medistill.ops`` against its pure-PyTorch
reference in ``medistill.ops.reference``, on small CPU inputs, forward and gradients.

    python scripts/smoke_ops.py                  # kernels required when the build says they were built
    python scripts/smoke_ops.py --require-kernels  # fail unless medistill._C is loaded
    python scripts/smoke_ops.py --allow-fallback   # a pure-Python install (MEDISTILL_EXT=0) passes too

Run it from outside the source tree (e.g. ``cd /tmp``) so that the installed package is imported.
Prints one line per check and exits non-zero on any mismatch. A few seconds on one thread.
"""
from __future__ import annotations

import argparse
import sys

import torch


def _tensors(value):
    return list(value) if isinstance(value, (tuple, list)) else [value]


class Checker:
    def __init__(self):
        self.failures: list[str] = []
        self.count = 0

    def close(self, name: str, got, want, atol: float, rtol: float) -> None:
        self.count += 1
        got, want = _tensors(got), _tensors(want)
        problem = None
        if len(got) != len(want):
            problem = f"{len(got)} outputs vs {len(want)}"
        for a, b in zip(got, want):
            if problem:
                break
            if a is None and b is None:
                continue
            if a is None or b is None:  # an input the loss ignores (DC's 'ours' skips biases): zero gradient
                a, b = (torch.zeros_like(b) if a is None else a), (torch.zeros_like(a) if b is None else b)
            if a.shape != b.shape or a.dtype != b.dtype:
                problem = f"shape/dtype {tuple(a.shape)} {a.dtype} vs {tuple(b.shape)} {b.dtype}"
            elif not torch.allclose(a.double(), b.double(), atol=atol, rtol=rtol, equal_nan=False):
                diff = (a.double() - b.double()).abs().max().item()
                problem = f"max abs diff {diff:.3g} (atol {atol:g}, rtol {rtol:g})"
        print(f"  {'ok  ' if problem is None else 'FAIL'}  {name}" + ("" if problem is None else f": {problem}"),
              flush=True)
        if problem is not None:
            self.failures.append(f"{name}: {problem}")


def with_grads(fn, inputs, *args, seed=0, **kwargs):
    """fn's output and the gradients of a random projection of it w.r.t. each input."""
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    out = fn(*leaves, *args, **kwargs)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    grads = torch.autograd.grad(out, leaves, g, allow_unused=True)
    return [out.detach(), *grads]


def run(check: Checker) -> None:
    from medistill import ops
    from medistill.ops import dsa_params, reference

    gen = torch.Generator().manual_seed(0)
    f32 = dict(atol=1e-5, rtol=1e-4)
    resample = dict(atol=2e-4, rtol=1e-4)  # scale/rotate: closed-form vs linspace grid coordinates

    x = torch.randn(4, 3, 9, 7, generator=gen)
    mean, std = torch.randn(3, generator=gen), torch.rand(3, generator=gen) + 0.5
    check.close("channel_normalize", with_grads(lambda t: ops.channel_normalize(t, mean, std), [x]),
                with_grads(lambda t: reference.channel_normalize(t, mean, std), [x]), **f32)

    x = torch.randn(3, 5, 10, 9, generator=gen)
    w, b = torch.rand(5, generator=gen) + 0.5, torch.randn(5, generator=gen)
    check.close("norm_relu_pool (x, weight, bias grads)", with_grads(ops.norm_relu_pool, [x, w, b]),
                with_grads(reference.norm_relu_pool, [x, w, b]), **f32)

    for channels in (1, 3):
        for family in dsa_params.FAMILIES + ("M",):
            strategy = dsa_params.DEFAULT_STRATEGY if family == "M" else family
            p = ops.sample_dsa_params(5, 12, 11, strategy=strategy, mode="M", generator=torch.Generator().manual_seed(1))
            x = torch.randn(5, channels, 12, 11, generator=gen)
            tol = resample if family in ("scale", "rotate", "M") else f32
            check.close(f"dsa {family}, {channels} channel(s)", with_grads(lambda t: ops.dsa(t, p), [x]),
                        with_grads(lambda t: reference.dsa(t, p), [x]), **tol)
    for mode in ("S", "M"):  # the sampler (one op with the kernels) against its eager draw, same seed
        p = ops.sample_dsa_params(6, 28, 28, mode=mode, generator=torch.Generator().manual_seed(3))
        const = dsa_params._constants(torch.device("cpu"), 28, 28,
                                      dsa_params.parse_strategy(dsa_params.DEFAULT_STRATEGY, mode), mode)
        ints, floats = dsa_params.sample_eager(const, 6, mode, torch.Generator().manual_seed(3))
        check.close(f"sample_dsa_params mode {mode}", [p.ints, p.floats], [ints, floats.contiguous()], atol=0, rtol=0)

    shapes = [(6, 3, 3, 3), (6,), (4, 24)]
    real = [torch.randn(s, generator=gen) for s in shapes]
    syn = [torch.randn(s, generator=gen) for s in shapes]
    for metric in ("ours", "mse", "cos"):
        check.close(f"gradient_match_loss {metric}",
                    with_grads(lambda *s: ops.gradient_match_loss(real, list(s), metric), syn),
                    with_grads(lambda *s: reference.gradient_match_loss(real, list(s), metric), syn), **f32)
    real_b = [torch.randn((3, *s), generator=gen) for s in shapes]
    syn_b = [torch.randn((3, *s), generator=gen) for s in shapes]
    check.close("gradient_match_loss_batched ours",
                with_grads(lambda *s: ops.gradient_match_loss_batched(real_b, list(s), "ours"), syn_b),
                with_grads(lambda *s: reference.gradient_match_loss_batched(real_b, list(s), "ours"), syn_b), **f32)

    emb_real, y_real = torch.randn(12, 8, generator=gen), torch.arange(12) % 3
    emb_syn, y_syn = torch.randn(6, 8, generator=gen), torch.arange(6) % 3
    check.close("distribution_match_loss",
                with_grads(lambda e: ops.distribution_match_loss(emb_real, y_real, e, y_syn, 3), [emb_syn]),
                with_grads(lambda e: reference.distribution_match_loss(emb_real, y_real, e, y_syn, 3), [emb_syn]), **f32)

    ws, wt, w0 = (torch.randn(50, generator=gen) for _ in range(3))
    check.close("trajectory_match_loss",
                with_grads(lambda s: ops.trajectory_match_loss(s, wt, w0), [ws]),
                with_grads(lambda s: reference.trajectory_match_loss(s, wt, w0), [ws]), **f32)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--require-kernels", action="store_true", help="fail unless medistill._C is loaded")
    group.add_argument("--allow-fallback", action="store_true", help="pass on the references alone")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    import medistill

    info = medistill.build_info()
    print(f"medistill {medistill.__version__} from {medistill.__file__}")
    print(f"  torch {info['runtime_torch']}; compiled ops loaded: {info['ops_loaded']}; CPU SIMD: {info['cpu_simd']}; "
          f"OpenMP: {info['openmp']}; CUDA kernels: {info['cuda_kernels_compiled']} ({info['cuda_decision']})")
    if info["load_error"]:
        print(f"  why not loaded: {info['load_error']}")
    require = args.require_kernels or (not args.allow_fallback and info["extension_built"] is not False)
    if require and not info["ops_loaded"]:
        print("smoke: FAIL: the compiled kernels are not loaded", file=sys.stderr)
        return 1
    check = Checker()
    run(check)
    what = "kernels" if info["ops_loaded"] else "references (no compiled kernels)"
    if check.failures:
        print(f"smoke: {len(check.failures)} of {check.count} checks FAILED ({what} vs reference)", file=sys.stderr)
        return 1
    print(f"smoke: {check.count} checks passed ({what} vs reference)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
