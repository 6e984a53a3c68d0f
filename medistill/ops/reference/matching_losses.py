"""References of the matching losses (DC gradient matching, DM distribution matching, MTT).

Plain per-layer / per-class Python loops, written the way the published code computes them
(VICO-UoE/DatasetCondensation ``distance_wb``/``match_loss``, DM's per-class mean embeddings,
mtt-distillation's normalised parameter distance). They are the fallback when ``medistill._C``
is absent and the oracle the fused ops are tested and benchmarked against. Argument checking
lives in the public wrappers (``medistill.ops.gradient_match`` etc.), not here.
"""
from typing import Optional, Sequence

import torch

EPS = 1e-6


def _distance_ours(gr: torch.Tensor, gs: torch.Tensor) -> torch.Tensor:
    """Sum over rows of 1 - <gr, gs> / (|gr| |gs| + 1e-6); rows = first dim; 0 for tensors of dim <= 1."""
    if gr.dim() <= 1:
        return torch.zeros((), dtype=gr.dtype, device=gr.device)
    if gr.dim() > 2:
        gr = gr.reshape(gr.shape[0], -1)
        gs = gs.reshape(gs.shape[0], -1)
    return torch.sum(1 - torch.sum(gr * gs, dim=-1) / (torch.norm(gr, dim=-1) * torch.norm(gs, dim=-1) + EPS))


def gradient_match_loss(
    grads_real: Sequence[torch.Tensor], grads_syn: Sequence[torch.Tensor], metric: str = "ours"
) -> torch.Tensor:
    """DC's match_loss: a 0-dim tensor; grads_* are per-parameter gradient lists of equal shapes."""
    if metric == "ours":
        dis = torch.zeros((), dtype=grads_syn[0].dtype, device=grads_syn[0].device)
        for gr, gs in zip(grads_real, grads_syn):
            dis = dis + _distance_ours(gr, gs)
        return dis
    real_vec = torch.cat([g.reshape(-1) for g in grads_real])
    syn_vec = torch.cat([g.reshape(-1) for g in grads_syn])
    if metric == "mse":
        return torch.sum((syn_vec - real_vec) ** 2)
    if metric == "cos":
        return 1 - torch.sum(real_vec * syn_vec) / (torch.norm(real_vec) * torch.norm(syn_vec) + EPS)
    raise ValueError(f"gradient_match_loss: metric must be 'ours', 'mse' or 'cos', got {metric!r}")


def gradient_match_loss_batched(
    grads_real: Sequence[torch.Tensor], grads_syn: Sequence[torch.Tensor], metric: str = "ours"
) -> torch.Tensor:
    """Per-class losses (K,): grads_*[i] has shape (K, *param_shape_i); a loop over classes."""
    num_classes = grads_syn[0].shape[0]
    losses = [
        gradient_match_loss([g[k] for g in grads_real], [g[k] for g in grads_syn], metric)
        for k in range(num_classes)
    ]
    return torch.stack(losses)


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
    """DM loss, a loop over classes: sum_c |mean(emb_real[y==c]) - mean(emb_syn[y==c])|^2.

    A class with no real or no synthetic sample is skipped. ``kernel="mmd"``: per class, the
    biased Gaussian MMD^2 with the bandwidths of ``medistill.ops.distribution_match``.
    """
    loss = torch.zeros((), dtype=emb_syn.dtype, device=emb_syn.device)
    if kernel == "mmd":
        sigmas2 = _mmd_sigmas2(emb_real, y_real, emb_syn, y_syn, bandwidths)
    for c in range(num_classes):
        r = emb_real[y_real == c]
        s = emb_syn[y_syn == c]
        if r.shape[0] == 0 or s.shape[0] == 0:
            continue
        if kernel == "mean":
            loss = loss + torch.sum((torch.mean(r, dim=0) - torch.mean(s, dim=0)) ** 2)
        elif kernel == "mmd":
            loss = loss + _gauss(r, r, sigmas2).mean() + _gauss(s, s, sigmas2).mean() - 2 * _gauss(r, s, sigmas2).mean()
        else:
            raise ValueError(f"distribution_match_loss: kernel must be 'mean' or 'mmd', got {kernel!r}")
    return loss


def _sqdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cdist(a, b) ** 2


def _gauss(a: torch.Tensor, b: torch.Tensor, sigmas2: torch.Tensor) -> torch.Tensor:
    d = _sqdist(a, b)
    return sum(torch.exp(-d / (2 * s2)) for s2 in sigmas2)


def _mmd_sigmas2(emb_real, y_real, emb_syn, y_syn, bandwidths) -> torch.Tensor:
    """Squared bandwidths: given ones squared, else multiples of the mean within-class squared distance."""
    if bandwidths is not None:
        return torch.tensor([float(b) ** 2 for b in bandwidths], dtype=emb_syn.dtype, device=emb_syn.device)
    with torch.no_grad():
        x = torch.cat([emb_real, emb_syn]).detach()
        y = torch.cat([y_real, y_syn])
        same = (y[:, None] == y[None, :]).to(x.dtype)
        sqdist = (x.pow(2).sum(1)[:, None] + x.pow(2).sum(1)[None, :] - 2 * x @ x.T).clamp_min(0)
        base = (sqdist * same).sum() / same.sum().clamp_min(1)
        base = base.clamp_min(torch.finfo(x.dtype).tiny)
    return base * torch.tensor([0.25, 0.5, 1.0, 2.0, 4.0], dtype=x.dtype, device=x.device)


def trajectory_match_loss(w_student: torch.Tensor, w_target: torch.Tensor, w_start: torch.Tensor) -> torch.Tensor:
    """MTT loss ||w_student - w_target||^2 / ||w_start - w_target||^2 over flat vectors (0-dim)."""
    return torch.sum((w_student - w_target) ** 2) / torch.sum((w_start - w_target) ** 2)
