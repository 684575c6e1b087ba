"""CUDA-graph capture shared by this chapter's torch-level cases: capture once per input pointer set, replay after.

A captured graph reads its inputs at the addresses it was captured with and writes its outputs into buffers of its
own memory pool, so a graph is cached under the inputs' ``data_ptr()``s, shapes and dtypes (``pointer_key``): the
plugin warms every arm up on each input placement, so every graph is captured before timing starts.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch


def pointer_key(tensors: Sequence[Any]) -> tuple[Any, ...]:
    """What a graph captured on ``tensors`` is valid for: their addresses, shapes and dtypes (host values as is)."""
    return tuple((t.data_ptr(), tuple(t.shape), t.dtype) if isinstance(t, torch.Tensor) else t for t in tensors)


def capture(fn: Callable[..., Any], args: Sequence[Any], pool: Any = None) -> tuple[torch.cuda.CUDAGraph, Any]:
    """Run ``fn(*args)`` once on a side stream (lazy cuBLAS handles and workspaces are created outside the capture,
    as the PyTorch docs require), then capture one call; returns the graph and its static outputs."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn(*args)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        out = fn(*args)
    return graph, out
