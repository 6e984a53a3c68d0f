"""Exact k-nearest-neighbour search in Euclidean (L2) distance, batched and memory-bounded.

Distances come from the matrix form ‖q‖² + ‖b‖² − 2 q·bᵀ (one matmul per block), computed over
blocks of ``query_chunk`` queries × ``base_chunk`` base vectors; each block keeps its top-k and is
merged into the running top-k of its queries. The matrix form loses precision when two vectors are
nearly equal (cancellation), so the candidates (k + ``refine_extra`` per query) are re-scored with
the exact ‖q − b‖ and re-sorted: an exact copy has distance exactly 0.

Cost: O(S·N·D) time for S queries, N base vectors of dimension D; memory O(query_chunk·base_chunk)
for the distance block (≤ O(chunk·N)) plus O(S·k) for the result, besides the inputs. Runs on the
inputs' device (CUDA when given CUDA tensors or ``device="cuda"``).
"""
from __future__ import annotations

import torch


def nearest_neighbors(queries: torch.Tensor, base: torch.Tensor, k: int = 1, *,
                      exclude_index: torch.Tensor | None = None, query_chunk: int = 1024,
                      base_chunk: int = 16384, refine_extra: int = 4,
                      device: str | torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """queries (S, D), base (N, D) → (distances (S, k) float32 ascending, indices (S, k) int64 into base).

    ``exclude_index`` (S,) int64: for query i, base vector ``exclude_index[i]`` is skipped (leave-one-out
    when the queries are base vectors themselves; -1 skips nothing). Results live on the CPU.
    """
    if queries.dim() != 2 or base.dim() != 2 or queries.shape[1] != base.shape[1]:
        raise ValueError(f"queries (S, D) and base (N, D) must share D; got {tuple(queries.shape)} and {tuple(base.shape)}")
    n = base.shape[0] - (1 if exclude_index is not None else 0)
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}] for {base.shape[0]} base vectors, got {k}")
    device = torch.device(device) if device is not None else queries.device
    q_all = queries.to(device, torch.float32)
    b_all = base.to(device, torch.float32)
    b_norm = (b_all * b_all).sum(1)
    kc = min(k + refine_extra, n)
    out_d, out_i = [], []
    for qs in range(0, q_all.shape[0], query_chunk):
        q = q_all[qs : qs + query_chunk]
        q_norm = (q * q).sum(1, keepdim=True)
        best_d = torch.full((q.shape[0], 0), float("inf"), device=device)
        best_i = torch.zeros((q.shape[0], 0), dtype=torch.long, device=device)
        ex = exclude_index[qs : qs + query_chunk].to(device) if exclude_index is not None else None
        for bs in range(0, b_all.shape[0], base_chunk):
            b = b_all[bs : bs + base_chunk]
            d2 = torch.addmm(q_norm + b_norm[bs : bs + base_chunk], q, b.T, alpha=-2.0).clamp_min_(0)
            if ex is not None:
                rows = torch.nonzero((ex >= bs) & (ex < bs + b.shape[0])).flatten()
                d2[rows, ex[rows] - bs] = float("inf")
            vals, idx = d2.topk(min(kc, b.shape[0]), dim=1, largest=False)
            best_d, order = torch.cat([best_d, vals], 1).topk(min(kc, best_d.shape[1] + vals.shape[1]), 1, largest=False)
            best_i = torch.cat([best_i, idx + bs], 1).gather(1, order)
        # Exact re-scoring of the candidates; an excluded index never made it into best_i (its d2 is inf).
        exact = (q[:, None, :] - b_all[best_i]).pow(2).sum(-1).sqrt()
        exact = torch.where(torch.isinf(best_d), torch.full_like(exact, float("inf")), exact)
        exact, order = exact.sort(dim=1, stable=True)
        out_d.append(exact[:, :k].cpu())
        out_i.append(best_i.gather(1, order)[:, :k].cpu())
    return torch.cat(out_d), torch.cat(out_i)


def nearest_neighbors_loop(queries: torch.Tensor, base: torch.Tensor, k: int = 1,
                           exclude_index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The naive reference: one query at a time, ‖base − q‖ over all of base. Same outputs as above."""
    dists, idxs = [], []
    for i in range(queries.shape[0]):
        d = (base - queries[i]).pow(2).sum(1).sqrt()
        if exclude_index is not None and exclude_index[i] >= 0:
            d[exclude_index[i]] = float("inf")
        v, j = d.topk(k, largest=False)
        dists.append(v)
        idxs.append(j)
    return torch.stack(dists), torch.stack(idxs)
