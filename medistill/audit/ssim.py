"""Structural similarity (SSIM, Wang et al. 2004) with a Gaussian window, batched on torch.

Per channel: l·c·s = ((2μxμy + C1)(2σxy + C2)) / ((μx² + μy² + C1)(σx² + σy² + C2)), where μ, σ², σxy
are Gaussian-weighted local means, variances and covariance (window 11 × 11, σ = 1.5, population
covariance), C1 = (0.01·L)², C2 = (0.03·L)², L = data range. Only 'valid' windows (wholly inside the
image) are averaged, over pixels and then channels: the same number as
``skimage.metrics.structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=L)``, which averages the same interior after cropping.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

K1, K2 = 0.01, 0.03


def gaussian_window(size: int = 11, sigma: float = 1.5, dtype=torch.float32) -> torch.Tensor:
    """(size,) normalised 1-D Gaussian weights."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    w = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return (w / w.sum()).to(dtype)


def gaussian_filter_valid(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter, valid part only: (B, C, H, W) → (B, C, H − s + 1, W − s + 1)."""
    c, s = x.shape[1], window.numel()
    w = window.to(x)
    x = F.conv2d(x, w.view(1, 1, 1, s).expand(c, 1, 1, s), groups=c)
    return F.conv2d(x, w.view(1, 1, s, 1).expand(c, 1, s, 1), groups=c)


def _ssim_map_mean(mu_x, mu_y, var_x, var_y, cov, c1, c2) -> torch.Tensor:
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2)
    return (num / den).mean(dim=(-3, -2, -1))


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, window_size: int = 11,
         sigma: float = 1.5) -> torch.Tensor:
    """SSIM of matching pairs: x, y (B, C, H, W) → (B,). Images need H, W ≥ ``window_size``."""
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"ssim needs two (B, C, H, W) tensors of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if min(x.shape[-2:]) < window_size:
        raise ValueError(f"images {tuple(x.shape[-2:])} are smaller than the {window_size}-pixel SSIM window")
    w = gaussian_window(window_size, sigma, torch.float64 if x.dtype == torch.float64 else torch.float32)
    x, y = x.to(w.dtype), y.to(w.dtype)
    mu_x, mu_y = gaussian_filter_valid(x, w), gaussian_filter_valid(y, w)
    var_x = gaussian_filter_valid(x * x, w) - mu_x ** 2
    var_y = gaussian_filter_valid(y * y, w) - mu_y ** 2
    cov = gaussian_filter_valid(x * y, w) - mu_x * mu_y
    return _ssim_map_mean(mu_x, mu_y, var_x, var_y, cov, (K1 * data_range) ** 2, (K2 * data_range) ** 2)


@torch.no_grad()
def most_similar(queries: torch.Tensor, base: torch.Tensor, k: int = 1, *, exclude_index: torch.Tensor | None = None,
                 data_range: float = 1.0, pairs_per_block: int = 8192, window_size: int = 11, sigma: float = 1.5,
                 device: str | torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The k most similar base images by SSIM: queries (S, C, H, W), base (N, C, H, W) →
    (ssim (S, k) descending, indices (S, k)); ``exclude_index`` as in :func:`nearest.nearest_neighbors`.

    Local means and variances are filtered once per image; the covariance needs one filter per pair,
    done in blocks of about ``pairs_per_block`` pairs: O(S·N·H·W·window) time, O(pairs_per_block·H·W) memory.
    """
    device = torch.device(device) if device is not None else queries.device
    w = gaussian_window(window_size, sigma).to(device)
    q_all, b_all = queries.to(device, torch.float32), base.to(device, torch.float32)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2

    def stats(x):
        mu = gaussian_filter_valid(x, w)
        return mu, gaussian_filter_valid(x * x, w) - mu ** 2

    mu_b, var_b = stats(b_all)
    n = b_all.shape[0]
    base_block = max(1, min(n, pairs_per_block))
    query_block = max(1, pairs_per_block // base_block)
    out_s, out_i = [], []
    for qs in range(0, q_all.shape[0], query_block):
        q = q_all[qs : qs + query_block]
        mu_q, var_q = stats(q)
        scores = torch.empty(q.shape[0], n, device=device)
        for bs in range(0, n, base_block):
            b = b_all[bs : bs + base_block]
            m = q.shape[0] * b.shape[0]
            prod = (q[:, None] * b[None]).reshape(m, *q.shape[1:])
            mq = mu_q[:, None].expand(-1, b.shape[0], *mu_q.shape[1:]).reshape(m, *mu_q.shape[1:])
            mb = mu_b[None, bs : bs + base_block].expand(q.shape[0], -1, *mu_b.shape[1:]).reshape(m, *mu_b.shape[1:])
            vq = var_q[:, None].expand(-1, b.shape[0], *var_q.shape[1:]).reshape(m, *var_q.shape[1:])
            vb = var_b[None, bs : bs + base_block].expand(q.shape[0], -1, *var_b.shape[1:]).reshape(m, *var_b.shape[1:])
            cov = gaussian_filter_valid(prod, w) - mq * mb
            scores[:, bs : bs + b.shape[0]] = _ssim_map_mean(mq, mb, vq, vb, cov, c1, c2).view(q.shape[0], b.shape[0])
        if exclude_index is not None:
            ex = exclude_index[qs : qs + query_block].to(device)
            rows = torch.nonzero(ex >= 0).flatten()
            scores[rows, ex[rows]] = float("-inf")
        vals, idx = scores.topk(k, dim=1)
        out_s.append(vals.cpu())
        out_i.append(idx.cpu())
    return torch.cat(out_s), torch.cat(out_i)
