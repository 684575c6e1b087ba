"""Graph branch concurrency: independent task towers captured as one serial chain vs as parallel branches of a graph.

The computation: the task towers of a shared-bottom multi-task ranking model (one tower per predicted event:
click, like, share, follow, ...), each a 3-layer MLP of its own width on the shared features, ending in a sigmoid;
the towers' scores are stacked to (batch, towers). The towers are independent and differ in shape, so they cannot
be one batched matmul.

- Baseline: the towers captured into a CUDA graph on one stream, as ``torch.cuda.graph`` captures ordinary code: a
  chain of 49 nodes, each kernel waiting for the previous one. Every GEMM here fills a fraction of the GPU (a
  512 x 1024 output is 32 tiles of 128 x 128 for 132 SMs), so most SMs idle. Bound by the chain's latency.
- Optimized: the same kernels captured with each tower on its own side stream (forked from the capturing stream
  and joined back before the stack), which a graph records as 8 parallel branches: the towers' kernels run
  concurrently (8 branches, within the 8 hardware queues of the default ``CUDA_DEVICE_MAX_CONNECTIONS``). Bound by
  the longest tower plus the fork and join.

Both arms are graphs captured on first use of the input addresses (launch overhead is gone from both: only the
dependency structure differs) and return a clone of their static output. Host dispatch (one replay) is the same
for both and hidden.

Shape ``(batch, features)``, bf16; tower widths ``TOWERS``. Timing shape (512, 512): 512 candidate items scored
in one ranking request, 512 shared-bottom features.

Napkin math on an H100 SXM (bf16):
- work: weights 0.3-2.1 MB per tower, 7.5 MB in all, x 0.5 MB; 3.9 GFLOP: ~8 us at the bf16 GEMM rate.
- per tower: GEMM, ReLU, GEMM, ReLU, GEMV-like GEMM (one output), sigmoid: each a latency-bound small kernel of
  ~2-5 us (~19 us for the widest tower, ~13 us for the narrowest), plus ~0.5-1 us between dependent graph nodes.
- baseline: 48 tower kernels + 1 stack in one chain: ~130 us of kernels + ~25-50 us of gaps = ~160-180 us.
- optimized: the longest tower (~19 us + 6 gaps) + fork/join and stack (~5 us) = ~30 us if the 8 towers fit side
  by side (their first GEMMs are 8-32 tiles each: ~140 CTAs at once over 132 SMs); ~40-50 us if the GEMMs' shared
  memory lets only one CTA per SM and the branches partly queue.
- predicted speedup: ~170 / ~40 = ~4x (3-5x).

Measured (H100 VM, 2026-11-21, three processes at commits c0a8b42, 401dac0, 6242554): 155-156 us vs 67.2-67.3 us,
2.30-2.31x, below the predicted ~4x (3-5x). The serial chain is just below its ~160-180 us estimate; the branched
graph took ~67 us, above even the ~40-50 us allowed for partly queued branches. Likely (not profiled) the towers'
GEMMs share the SMs less than assumed and queue behind one another, and the fork, join and stack cost more than
~5 us.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from kernels import itemsize, normal, seeded
from kernels.ch12.capture import capture, pointer_key
from pytest_aiperf import Work

TOWERS = ((1024, 512), (1024, 512), (512, 256), (512, 256), (512, 256), (256, 128), (256, 128), (256, 128))

_SERIAL: dict[tuple[Any, ...], tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
_BRANCHED: dict[tuple[Any, ...], tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
_STREAMS: dict[torch.device, list[torch.cuda.Stream]] = {}


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor, ...]:
    """Shared features (batch, features), then per tower W1, b1, W2, b2, W3, b3 (torch's Linear layout, weights
    scaled by 1/sqrt(fan-in) so every layer's activations stay O(1))."""
    batch, features = shape
    gen = seeded(seed)
    params = [normal(gen, (batch, features), dtype, device)]
    for hidden1, hidden2 in TOWERS:
        for fan_in, fan_out in ((features, hidden1), (hidden1, hidden2), (hidden2, 1)):
            params += [normal(gen, (fan_out, fan_in), dtype, device, std=fan_in**-0.5),
                       normal(gen, (fan_out,), dtype, device, std=0.1)]
    return tuple(params)


def _tower(x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor,
           w3: torch.Tensor, b3: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(F.linear(F.relu(F.linear(F.relu(F.linear(x, w1, b1)), w2, b2)), w3, b3)).squeeze(1)


def serial_towers(x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
    """Every tower on the current stream, one after another."""
    return torch.stack([_tower(x, *params[6 * t:6 * t + 6]) for t in range(len(TOWERS))], dim=1)


def forked_towers(x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
    """Each tower on its own stream, forked from the current stream and joined back before the stack."""
    main = torch.cuda.current_stream(x.device)
    streams = _STREAMS.setdefault(x.device, [torch.cuda.Stream(x.device) for _ in TOWERS])
    scores = []
    for t, stream in enumerate(streams):
        stream.wait_stream(main)
        with torch.cuda.stream(stream):
            scores.append(_tower(x, *params[6 * t:6 * t + 6]))
    for stream in streams:
        main.wait_stream(stream)
    return torch.stack(scores, dim=1)


def _replay(cache: dict[tuple[Any, ...], Any], fn: Any, params: tuple[torch.Tensor, ...]) -> torch.Tensor:
    key = pointer_key(params)
    if key not in cache:
        cache[key] = capture(fn, params)
    graph, static_out = cache[key]
    graph.replay()
    return static_out.clone()


def baseline_serialized_graph(*params: torch.Tensor) -> torch.Tensor:
    """The towers replayed from a graph captured on one stream: a single chain of dependent nodes."""
    return _replay(_SERIAL, serial_towers, params)


def optimized_forked_branch_graph(*params: torch.Tensor) -> torch.Tensor:
    """The same kernels replayed from a graph captured across 8 forked streams: 8 concurrent branches."""
    return _replay(_BRANCHED, forked_towers, params)


def reference(x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
    """The towers in float64, eagerly (the graph arms need CUDA tensors of the case's dtype)."""
    return serial_towers(x, *params)


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """The features and every tower's weights read once, the scores written once; 2 flops per multiply-add."""
    batch, features = shape
    weights = sum(features * h1 + h1 + h1 * h2 + h2 + h2 + 1 for h1, h2 in TOWERS)
    macs = batch * sum(features * h1 + h1 * h2 + h2 for h1, h2 in TOWERS)
    return Work(bytes=float(itemsize(dtype) * (batch * features + weights + batch * len(TOWERS))),
                flops=float(2 * macs))
