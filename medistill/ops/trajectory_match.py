"""Trajectory matching loss of MTT as one fused torch op (``torch.ops.medistill.trajectory_match``).

    loss = ||w_student - w_target||^2 / ||w_start - w_target||^2

over flat parameter vectors (P,) of one dtype; returns a 0-dim tensor. Differentiable w.r.t.
``w_student`` (and w.r.t. ``w_target``/``w_start`` when they require grad). Like the reference
expression, ``w_start == w_target`` gives a division by zero (inf/NaN), not an error.
Kernels: float32/float64 on CPU; float16/bfloat16/float32/float64 on CUDA (float32 accumulation).
Otherwise, or without ``medistill._C``, the plain torch expression runs.
"""
import torch

from . import reference
from ._extension import has_ops, use_kernel


def trajectory_match_loss(w_student: torch.Tensor, w_target: torch.Tensor, w_start: torch.Tensor) -> torch.Tensor:
    """MTT's normalised distance between the student's and the expert's parameters (0-dim)."""
    name = "trajectory_match_loss"
    if w_student.dim() != 1 or w_target.shape != w_student.shape or w_start.shape != w_student.shape:
        raise ValueError(
            f"{name}: w_student, w_target and w_start must be flat vectors of one length, got shapes "
            f"{tuple(w_student.shape)}, {tuple(w_target.shape)} and {tuple(w_start.shape)}"
        )
    if not w_student.is_floating_point() or not (w_student.dtype == w_target.dtype == w_start.dtype):
        raise ValueError(f"{name}: the vectors must share one floating dtype, got "
                         f"{w_student.dtype}, {w_target.dtype} and {w_start.dtype}")
    if not (w_student.device == w_target.device == w_start.device):
        raise ValueError(f"{name}: the vectors must be on one device")
    if use_kernel(w_student) and (w_student.device.type != "cpu" or w_student.dtype in (torch.float32, torch.float64)):
        loss, _ = torch.ops.medistill.trajectory_match(w_student, w_target, w_start)
        return loss
    return reference.trajectory_match_loss(w_student, w_target, w_start)


if has_ops():

    @torch.library.register_fake("medistill::trajectory_match")
    def _(w_student, w_target, w_start):
        torch._check(w_student.shape == w_target.shape, lambda: "trajectory_match: shapes differ")
        return w_student.new_empty(()), w_student.new_empty((2,), dtype=torch.float64)

    @torch.library.register_fake("medistill::trajectory_match_backward")
    def _(grad_loss, w_student, w_target, w_start, stats, output_mask):
        return [torch.empty_like(w_student, memory_format=torch.contiguous_format) for m in output_mask if m]

    def _setup_context(ctx, inputs, output):
        ctx.set_materialize_grads(False)  # the stats outputs never get a gradient: no zeros for them
        _, stats = output
        ctx.mark_non_differentiable(stats)
        ctx.save_for_backward(*inputs, stats)

    def _backward(ctx, grad_loss, _grad_stats):
        if grad_loss is None:  # the loss itself got no gradient
            return None, None, None
        w_student, w_target, w_start, stats = ctx.saved_tensors
        mask = [bool(m) for m in ctx.needs_input_grad[:3]]
        grads = iter(torch.ops.medistill.trajectory_match_backward(grad_loss, w_student, w_target, w_start, stats, mask))
        return tuple(next(grads) if m else None for m in mask)

    torch.library.register_autograd("medistill::trajectory_match", _backward, setup_context=_setup_context)
