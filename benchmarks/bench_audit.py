"""The audit's nearest-neighbour search: batched matrix-form top-k (medistill) vs a per-image loop (reference).

Case: S synthetic × 100,000 real 784-d vectors (28×28 grey images flattened), k = 3, one thread, float32.
The reference computes ‖real − q‖ for one query at a time (the obvious loop); medistill's search does
blocks of ‖q‖² + ‖b‖² − 2q·bᵀ with one matmul each, keeps the top-k per block and re-scores the
candidates exactly. S defaults to 20 (the loop takes seconds per query on a shared 2-core machine);
set MEDISTILL_BENCH_AUDIT_QUERIES=100 for the 100 × 100,000 case.
Run: python -m pytest benchmarks/bench_audit.py -p no:cacheprovider
"""
import os

import pytest
import torch

from medistill.audit import nearest_neighbors, nearest_neighbors_loop

from .conftest import synchronize

QUERIES = int(os.environ.get("MEDISTILL_BENCH_AUDIT_QUERIES", "20"))
REAL, DIM, K = 100_000, 784, 3


@pytest.fixture(scope="module")
def vectors():
    g = torch.Generator().manual_seed(0)
    return torch.rand(QUERIES, DIM, generator=g), torch.rand(REAL, DIM, generator=g)


def test_nearest_neighbours(benchmark, impl, vectors, device):
    benchmark.group = f"[{device.type}] audit k-NN, {QUERIES} × {REAL:,} × {DIM}, k={K}"
    queries, real = (v.to(device) for v in vectors)
    fn = nearest_neighbors_loop if impl == "reference" else nearest_neighbors

    def run():
        out = fn(queries, real, K)
        synchronize(device)
        return out

    d, i = benchmark.pedantic(run, rounds=2, iterations=1, warmup_rounds=0)
    d_ref, i_ref = nearest_neighbors_loop(queries[:2], real, K)
    assert torch.equal(i[:2].cpu(), i_ref.cpu())
