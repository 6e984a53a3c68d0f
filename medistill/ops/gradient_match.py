"""Gradient matching loss of DC/DSA as one fused torch op (``torch.ops.medistill.gradient_match``).

Arguments are sequences of tensors, one per network parameter, as ``torch.autograd.grad`` returns
them; ``grads_real[i]`` and ``grads_syn[i]`` share a shape. ``metric``:

* ``"ours"`` (default, the published distance): each tensor with >= 2 dims is cut into rows
  (``O x I x k x k`` -> ``O`` rows of ``I*k*k``; ``O x I`` as is; in general ``shape[0]`` rows) and
  every row contributes ``1 - <g_real, g_syn> / (|g_real| |g_syn| + 1e-6)``; 1-D (and 0-D) tensors
  contribute 0. A zero row contributes 1 and finite (zero) gradients, never NaN.
* ``"mse"``: ``sum((g_syn - g_real)**2)`` over all tensors.
* ``"cos"``: ``1 - <g_real, g_syn> / (|g_real| |g_syn| + 1e-6)`` over all tensors concatenated.

The loss is differentiable w.r.t. ``grads_syn`` (in DC it carries the ``create_graph`` graph back to
the synthetic images) and w.r.t. ``grads_real`` when those require grad (once: there is no double
backward through the loss itself). One kernel launch computes
the forward for all tensors (one more, the backward); see ``csrc/cuda/gradient_match.cu``.
Kernels: float32/float64 on CPU; float16/bfloat16/float32/float64 on CUDA (float32 accumulation).
Other dtypes/devices, more than 256 tensors on CUDA, or a missing ``medistill._C`` run the
pure-PyTorch reference (``medistill.ops.reference.gradient_match_loss``).

Autograd: ``torch.library.register_autograd`` on the op (used by direct op calls, ``opcheck`` and
``torch.compile``). In eager mode the wrappers go through ``_GradientMatchFunction`` instead, an
``autograd.Function`` around the same two ops: torch.library's generic handling of ``Tensor[]``
arguments (pytree flattening of ~30 tensors each way) costs about as much as the kernels
themselves for one ConvNet. Both paths compute the same numbers with the same backward op.
"""
from typing import List, Sequence, Tuple

import torch

from . import reference
from ._extension import has_ops, use_kernel

METRICS = ("ours", "mse", "cos")
_CUDA_MAX_TENSORS = 256


def gradient_match_loss(
    grads_real: Sequence[torch.Tensor], grads_syn: Sequence[torch.Tensor], metric: str = "ours"
) -> torch.Tensor:
    """Matching distance between two gradient lists; returns a 0-dim tensor (the lists' dtype)."""
    real, syn = _check_lists("gradient_match_loss", grads_real, grads_syn, metric)
    if _kernel_serves(syn):  # the op checks shapes, dtypes and devices itself
        return _run_op(real, syn, metric, False)
    _check_tensors("gradient_match_loss", real, syn, batched=False)
    return reference.gradient_match_loss(real, syn, metric)


def gradient_match_loss_batched(
    grads_real: Sequence[torch.Tensor], grads_syn: Sequence[torch.Tensor], metric: str = "ours"
) -> torch.Tensor:
    """Per-class distances, all classes in one op.

    grads_real[i], grads_syn[i]: (K, *param_shape_i) (per-class gradients stacked on dim 0).
    Returns (K,): entry k equals ``gradient_match_loss([g[k] for g in grads_real], [g[k] ...], metric)``.
    """
    real, syn = _check_lists("gradient_match_loss_batched", grads_real, grads_syn, metric)
    if _kernel_serves(syn):  # the op checks shapes, dtypes, devices and class dims itself
        return _run_op(real, syn, metric, True)
    _check_tensors("gradient_match_loss_batched", real, syn, batched=True)
    return reference.gradient_match_loss_batched(real, syn, metric)


def _run_op(real: List[torch.Tensor], syn: List[torch.Tensor], metric: str, batched: bool) -> torch.Tensor:
    if (
        not torch.compiler.is_compiling()
        and torch.is_grad_enabled()
        and any(t.requires_grad for t in syn + real)
    ):
        return _GradientMatchFunction.apply(metric, batched, len(real), *real, *syn)
    loss, _ = torch.ops.medistill.gradient_match(real, syn, metric, batched)
    return loss


class _GradientMatchFunction(torch.autograd.Function):
    """Eager autograd around medistill::gradient_match / gradient_match_backward (see module doc)."""

    @staticmethod
    def forward(ctx, metric, batched, count, *tensors):
        real, syn = list(tensors[:count]), list(tensors[count:])
        loss, stats = torch.ops.medistill.gradient_match(real, syn, metric, batched)
        ctx.metric, ctx.batched, ctx.count = metric, batched, count
        ctx.save_for_backward(*tensors, stats)
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable  # the backward op has no derivative of its own
    def backward(ctx, grad_loss):
        n = ctx.count
        saved = ctx.saved_tensors
        need = ctx.needs_input_grad[3:]
        need_real, need_syn = any(need[:n]), any(need[n:])
        grad_real, grad_syn = torch.ops.medistill.gradient_match_backward(
            grad_loss, list(saved[:n]), list(saved[n:2 * n]), saved[2 * n], ctx.metric, ctx.batched, need_real,
            need_syn,
        )
        grad_real = list(grad_real) if need_real else [None] * n
        grad_syn = list(grad_syn) if need_syn else [None] * n
        return (None, None, None, *grad_real, *grad_syn)


def _kernel_serves(syn: List[torch.Tensor]) -> bool:
    if not use_kernel(syn[0]):
        return False
    if syn[0].device.type == "cpu":
        return syn[0].dtype in (torch.float32, torch.float64)
    return len(syn) <= _CUDA_MAX_TENSORS


def _check_lists(
    name: str, grads_real: Sequence[torch.Tensor], grads_syn: Sequence[torch.Tensor], metric: str
) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """Checks the metric and the two lists' lengths; returns them as lists."""
    if metric not in METRICS:
        raise ValueError(f"{name}: metric must be one of {METRICS}, got {metric!r}")
    if isinstance(grads_real, torch.Tensor) or isinstance(grads_syn, torch.Tensor):
        raise TypeError(f"{name}: grads_real and grads_syn must be sequences of tensors (one per parameter)")
    real, syn = list(grads_real), list(grads_syn)
    if len(real) != len(syn):
        raise ValueError(f"{name}: grads_real has {len(real)} tensors but grads_syn has {len(syn)}")
    if not syn:
        raise ValueError(f"{name}: the gradient lists are empty")
    if not isinstance(syn[0], torch.Tensor):
        raise TypeError(f"{name}: grads_syn[0] must be a tensor")
    return real, syn


def _check_tensors(name: str, real: List[torch.Tensor], syn: List[torch.Tensor], batched: bool) -> None:
    """The op's own shape/dtype/device checks, for the reference path."""
    ref = syn[0]
    for i, (r, s) in enumerate(zip(real, syn)):
        if not isinstance(r, torch.Tensor) or not isinstance(s, torch.Tensor):
            raise TypeError(f"{name}: grads_real[{i}] and grads_syn[{i}] must be tensors")
        if r.shape != s.shape:
            raise ValueError(
                f"{name}: grads_real[{i}] and grads_syn[{i}] differ in shape: {tuple(r.shape)} vs {tuple(s.shape)}"
            )
        if not s.is_floating_point() or r.dtype != ref.dtype or s.dtype != ref.dtype:
            raise ValueError(f"{name}: all gradients must share one dtype (floating), got {ref.dtype} and "
                             f"{r.dtype}/{s.dtype} at index {i}")
        if r.device != ref.device or s.device != ref.device:
            raise ValueError(f"{name}: all gradients must be on one device, got {ref.device} and "
                             f"{r.device}/{s.device} at index {i}")
        if batched and (s.dim() == 0 or s.shape[0] != ref.shape[0]):
            raise ValueError(
                f"{name}: every tensor needs the same leading class dim ({ref.shape[0] if ref.dim() else '?'}), "
                f"index {i} has shape {tuple(s.shape)}"
            )


def _stats_rows(grads_syn, metric, batched):
    if metric == "ours":
        lead = 1 if batched else 0
        return sum(g.shape[lead] for g in grads_syn if g.dim() >= 2 + lead)
    return 1 if metric == "cos" else 0


if has_ops():

    @torch.library.register_fake("medistill::gradient_match")
    def _(grads_real, grads_syn, metric, batched):
        torch._check(len(grads_real) == len(grads_syn), lambda: "gradient_match: lists differ in length")
        classes = grads_syn[0].shape[0] if batched else 1
        loss = grads_syn[0].new_empty((classes,) if batched else ())
        stats = grads_syn[0].new_empty((classes, _stats_rows(grads_syn, metric, batched), 3), dtype=torch.float64)
        return loss, stats

    @torch.library.register_fake("medistill::gradient_match_backward")
    def _(grad_loss, grads_real, grads_syn, stats, metric, batched, need_real, need_syn):
        like = lambda t: torch.empty_like(t, memory_format=torch.contiguous_format)  # noqa: E731
        return ([like(g) for g in grads_real] if need_real else [],
                [like(g) for g in grads_syn] if need_syn else [])

    def _setup_context(ctx, inputs, output):
        ctx.set_materialize_grads(False)  # the stats outputs never get a gradient: no zeros for them
        grads_real, grads_syn, metric, batched = inputs
        _, stats = output
        ctx.metric = metric
        ctx.batched = batched
        ctx.count = len(grads_real)
        ctx.mark_non_differentiable(stats)
        ctx.save_for_backward(*grads_real, *grads_syn, stats)

    def _backward(ctx, grad_loss, _grad_stats):
        if grad_loss is None:  # the loss itself got no gradient
            return [None] * ctx.count, [None] * ctx.count, None, None
        saved = ctx.saved_tensors
        n = ctx.count
        real, syn, stats = list(saved[:n]), list(saved[n:2 * n]), saved[2 * n]
        need_real = any(ctx.needs_input_grad[0])
        need_syn = any(ctx.needs_input_grad[1])
        grad_real, grad_syn = torch.ops.medistill.gradient_match_backward(
            grad_loss, real, syn, stats, ctx.metric, ctx.batched, need_real, need_syn
        )
        return (list(grad_real) if need_real else [None] * n, list(grad_syn) if need_syn else [None] * n, None, None)

    torch.library.register_autograd("medistill::gradient_match", _backward, setup_context=_setup_context)
