"""Distribution matching loss of DM as one fused torch op (``torch.ops.medistill.distribution_match``).

``kernel="mean"`` (default, the published DM loss)::

    loss = sum over classes c of || mean(emb_real[y_real == c]) - mean(emb_syn[y_syn == c]) ||^2

all classes in one op, one pass over each embedding matrix, differentiable w.r.t. both embeddings.
A class with no real row or no synthetic row is **skipped** (contributes 0, gets zero gradient),
never NaN. Labels outside ``[0, num_classes)`` raise on CPU and trip a device-side assert on CUDA.

``kernel="mmd"`` (named alternative, plain PyTorch, not a fused kernel): per class present on both
sides, the biased squared MMD with a sum of Gaussian kernels ``exp(-|x - y|^2 / (2 sigma^2))``;
``bandwidths`` are the sigmas, by default ``sqrt(m * base)`` for m in (1/4, 1/2, 1, 2, 4) with
``base`` the mean squared distance between same-class embeddings (real and synthetic pooled,
detached).

Kernels: float32/float64 on CPU; float16/bfloat16/float32/float64 on CUDA (float32 accumulation).
Otherwise, or without ``medistill._C``, the per-class reference loop runs.
"""
from typing import Optional, Sequence

import torch

from . import reference
from ._extension import has_ops, use_kernel
from .reference.matching_losses import _mmd_sigmas2

KERNELS = ("mean", "mmd")


def distribution_match_loss(
    emb_real: torch.Tensor,
    y_real: torch.Tensor,
    emb_syn: torch.Tensor,
    y_syn: torch.Tensor,
    num_classes: int,
    *,
    kernel: str = "mean",
    bandwidths: Optional[Sequence[float]] = None,
) -> torch.Tensor:
    """DM loss over all classes; emb_* (N, D) float, y_* (N,) int64 in [0, num_classes); returns 0-dim."""
    _check(emb_real, y_real, emb_syn, y_syn, num_classes, kernel, bandwidths)
    if kernel == "mmd":
        _check_label_range(y_real, "y_real", num_classes)
        _check_label_range(y_syn, "y_syn", num_classes)
        return _mmd_all_classes(emb_real, y_real, emb_syn, y_syn, num_classes, bandwidths)
    if use_kernel(emb_real) and (emb_real.device.type != "cpu" or emb_real.dtype in (torch.float32, torch.float64)):
        loss, _, _ = torch.ops.medistill.distribution_match(emb_real, y_real, emb_syn, y_syn, num_classes)
        return loss
    _check_label_range(y_real, "y_real", num_classes)
    _check_label_range(y_syn, "y_syn", num_classes)
    return reference.distribution_match_loss(emb_real, y_real, emb_syn, y_syn, num_classes)


def _check(emb_real, y_real, emb_syn, y_syn, num_classes, kernel, bandwidths) -> None:
    name = "distribution_match_loss"
    if kernel not in KERNELS:
        raise ValueError(f"{name}: kernel must be one of {KERNELS}, got {kernel!r}")
    if bandwidths is not None and (kernel != "mmd" or len(bandwidths) == 0 or min(bandwidths) <= 0):
        raise ValueError(f"{name}: bandwidths must be a non-empty list of positive sigmas, and only with kernel='mmd'")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"{name}: num_classes must be a positive int, got {num_classes!r}")
    for emb, y, side in ((emb_real, y_real, "real"), (emb_syn, y_syn, "syn")):
        if emb.dim() != 2 or not emb.is_floating_point():
            raise ValueError(f"{name}: emb_{side} must be a float (N, D) tensor, got {emb.dtype} {tuple(emb.shape)}")
        if y.dim() != 1 or y.dtype != torch.int64 or y.shape[0] != emb.shape[0]:
            raise ValueError(
                f"{name}: y_{side} must be int64 labels of shape ({emb.shape[0]},), got {y.dtype} {tuple(y.shape)}"
            )
        if emb.device != emb_real.device or y.device != emb_real.device:
            raise ValueError(f"{name}: all tensors must be on one device")
    if emb_real.shape[1] != emb_syn.shape[1] or emb_real.dtype != emb_syn.dtype:
        raise ValueError(
            f"{name}: emb_real and emb_syn differ: {emb_real.dtype} {tuple(emb_real.shape)} vs "
            f"{emb_syn.dtype} {tuple(emb_syn.shape)}"
        )


def _check_label_range(y: torch.Tensor, name: str, num_classes: int) -> None:
    """Host-side label check for the non-kernel paths (a device sync on CUDA)."""
    if y.numel() and bool(((y < 0) | (y >= num_classes)).any()):
        bad = y[(y < 0) | (y >= num_classes)][0].item()
        raise ValueError(f"distribution_match_loss: {name} holds label {bad}, out of range for num_classes = {num_classes}")


def _sqdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.pow(2).sum(1)[:, None] + b.pow(2).sum(1)[None, :] - 2 * a @ b.T).clamp_min(0)


def _mmd_all_classes(emb_real, y_real, emb_syn, y_syn, num_classes, bandwidths) -> torch.Tensor:
    """Sum over classes of the biased Gaussian MMD^2, every class at once through same-class weights."""
    sigmas2 = _mmd_sigmas2(emb_real, y_real, emb_syn, y_syn, bandwidths)
    count_r = torch.bincount(y_real, minlength=num_classes).to(emb_real.dtype)
    count_s = torch.bincount(y_syn, minlength=num_classes).to(emb_real.dtype)
    present = (count_r > 0) & (count_s > 0)
    inv_r = torch.where(present, 1 / count_r.clamp_min(1), torch.zeros_like(count_r))
    inv_s = torch.where(present, 1 / count_s.clamp_min(1), torch.zeros_like(count_s))

    def term(a, ya, inv_a, b, yb, inv_b):
        d = _sqdist(a, b)
        k = sum(torch.exp(-d / (2 * s2)) for s2 in sigmas2)
        w = (ya[:, None] == yb[None, :]).to(a.dtype) * inv_a[ya][:, None] * inv_b[yb][None, :]
        return (k * w).sum()

    return (term(emb_real, y_real, inv_r, emb_real, y_real, inv_r) + term(emb_syn, y_syn, inv_s, emb_syn, y_syn, inv_s)
            - 2 * term(emb_real, y_real, inv_r, emb_syn, y_syn, inv_s))


if has_ops():

    @torch.library.register_fake("medistill::distribution_match")
    def _(emb_real, y_real, emb_syn, y_syn, num_classes):
        torch._check(emb_real.shape[1] == emb_syn.shape[1], lambda: "distribution_match: embedding sizes differ")
        loss = emb_real.new_empty(())
        diff = emb_real.new_empty((num_classes, emb_real.shape[1]), dtype=torch.float64)
        counts = emb_real.new_empty((num_classes, 2), dtype=torch.int64)
        return loss, diff, counts

    @torch.library.register_fake("medistill::distribution_match_backward")
    def _(grad_loss, class_diff, class_counts, y, side):
        return grad_loss.new_empty((y.shape[0], class_diff.shape[1]))

    def _setup_context(ctx, inputs, output):
        ctx.set_materialize_grads(False)  # the stats outputs never get a gradient: no zeros for them
        _, y_real, _, y_syn, _ = inputs
        _, diff, counts = output
        ctx.mark_non_differentiable(diff, counts)
        ctx.save_for_backward(y_real, y_syn, diff, counts)

    def _backward(ctx, grad_loss, _grad_diff, _grad_counts):
        if grad_loss is None:  # the loss itself got no gradient
            return None, None, None, None, None
        y_real, y_syn, diff, counts = ctx.saved_tensors
        grad_real = grad_syn = None
        if ctx.needs_input_grad[0]:
            grad_real = torch.ops.medistill.distribution_match_backward(grad_loss, diff, counts, y_real, 0)
        if ctx.needs_input_grad[2]:
            grad_syn = torch.ops.medistill.distribution_match_backward(grad_loss, diff, counts, y_syn, 1)
        return grad_real, None, grad_syn, None, None

    torch.library.register_autograd("medistill::distribution_match", _backward, setup_context=_setup_context)
