"""Capture a step (e.g. DSA sampling + op + backward) as one CUDA graph, to replay it without host
work per kernel: on a GPU, a DSA call is microseconds of kernels inside tens of microseconds of
Python, dispatch and autograd (BENCHMARKS.md: "DSA op on CUDA" and "GPU runs")."""
from __future__ import annotations

from typing import Any, Callable

import torch


def capture_cuda_graph(step: Callable[[], Any], generator: torch.Generator | None = None,
                       warmup: int = 3) -> tuple[torch.cuda.CUDAGraph, Any]:
    """Run ``step`` ``warmup`` times on a side stream (allocator and autograd warm-up, as CUDA-graph
    capture requires), then capture one call. Returns ``(graph, outputs)``: ``graph.replay()`` reruns
    the step in place, writing into the same ``outputs`` tensors. A CUDA ``generator`` that ``step``
    draws from is registered with the graph, so every replay draws fresh numbers."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    if generator is not None:
        graph.register_generator_state(generator)
    with torch.cuda.graph(graph):
        outputs = step()
    return graph, outputs
