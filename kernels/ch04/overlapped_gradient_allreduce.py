"""Overlapped gradient all-reduce: a data-parallel step that all-reduces after backward vs from backward's hooks.

- Baseline: forward, the whole backward, then one blocking all-reduce per weight gradient: the communication starts
  only when the last gradient exists, and the GPU computes nothing while it runs. Bound by compute + communication.
- Optimized: the same forward and backward, with a post-accumulate-grad hook on every weight that launches an
  asynchronous all-reduce of its gradient the moment autograd has finished it (DDP's reducer does this per bucket).
  The all-reduce of layer ``l``'s gradients runs on NCCL's stream while backward computes layer ``l - 1``'s; the
  work handles are waited on before returning. Bound by compute + the all-reduce of the last gradient to appear
  (layer 0's gate/up projection), plus what NCCL's SMs take from the GEMMs they run beside.

Both arms all-reduce the same tensors (one collective per weight gradient, each tens to hundreds of MB, so per-call
latency is not the difference); only when the collectives start changes.

Shape ``(tokens, hidden, ffn, layers)``, bf16: ``layers`` pre-norm residual SwiGLU MLP blocks (an RMSNorm without
weight, gate and up projections fused into one ``2 ffn x hidden`` weight, SiLU * up, down projection), trained on
this rank's ``tokens`` (its micro-batch) with an upstream gradient standing in for the loss's. Timing shape (2048,
4096, 14336, 4): four Llama-3-8B MLPs (176 M weights each, 352 MB of bf16 gradients per layer) on one 2048-token
sequence per rank.

Napkin math on H200s linked by NVLink/NVSwitch (bf16 ~800 TFLOP/s; NCCL all-reduce bus bandwidth ~400 GB/s, so
~400 GB/s of algorithm bandwidth on 2 ranks and ~267 GB/s on 4):
- work: forward 6 T h f = 0.72 TFLOP per layer (~0.9 ms), backward twice that (~1.8 ms; layer 0 needs no input
  gradient, ~0.9 ms): 7.9 TFLOP, ~9.9 ms of GEMMs for 4 layers. All-reduce: 352 MB per layer, ~0.88 ms on 2 ranks
  (~1.3 ms on 4), 1.41 GB in all.
- baseline: ~9.9 + 4 x 0.88 = ~13.4 ms on 2 ranks; ~9.9 + 4 x 1.3 = ~15.2 ms on 4.
- optimized: each layer's all-reduce hides behind the next layer's backward (~1.8 ms > 0.88 / 1.3 ms); exposed are
  layer 0's gate/up gradient (235 MB: ~0.6 / ~0.9 ms) and ~10-20% of the GEMM time NCCL's kernels overlap with
  (~0.4 / ~0.6 ms): ~10.9 ms on 2 ranks, ~11.4 ms on 4.
- predicted speedup: ~1.2x on 2 H200s, ~1.3x on 4 (the gain grows with the ranks, whose all-reduce is slower).
- ``compute_only_forward_backward`` times the ~9.9 ms of GEMMs alone, so the report can tell the baseline's
  all-reduce time (~3.5 / ~5.2 ms predicted), its bus bandwidth, and the share the optimized arm hides (~70%).

Measured (4x H200 VM, NVLink 4 via NVSwitch, NVLS off, torch 2.11, NCCL 2.28.9; 2026-11-21, commits 11d7741, 316153b
and 0bd6377, three processes): 18.5-19.2 ms -> 15.3-16.0 ms on 2 ranks (1.20-1.22x), 20.0-20.4 ms -> 16.8-17.3 ms on 4
(1.18-1.19x); predicted ~1.2x and ~1.3x. The compute-only probe (second and third processes) splits the baseline: its
all-reduces run at 264-269 GB/s on 2 ranks and 326-327 GB/s on 4, 89-97% and 97% of the 256 MB all-reduce's bus
bandwidth, and the optimized arm hides 61-63% and 47-50% of that communication. On 4 ranks less is hidden than
predicted: the NCCL kernels beside the backward GEMMs slow them (likely; not profiled).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from kernels import itemsize, normal, seeded
from kernels.ch04.ranks import rank_seeded
from pytest_aiperf import Work


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor, ...]:
    """This rank's micro-batch and upstream gradient, then the weights (the same on every rank), layer by layer."""
    tokens, hidden, ffn, layers = shape
    mine = rank_seeded(seed)
    x = normal(mine, (tokens, hidden), dtype, device)
    grad_out = normal(mine, (tokens, hidden), dtype, device, std=tokens**-0.5)
    shared = seeded(seed)
    weights = []
    for _ in range(layers):
        weights.append(normal(shared, (2 * ffn, hidden), dtype, device, std=hidden**-0.5))
        weights.append(normal(shared, (hidden, ffn), dtype, device, std=ffn**-0.5))
    return (x, grad_out, *weights)


def _forward_backward(x: torch.Tensor, grad_out: torch.Tensor, leaves: list[torch.Tensor]) -> None:
    """The pre-norm residual SwiGLU stack, then backward from ``grad_out``: fills every leaf's ``.grad``."""
    h = x
    for gate_up, down in zip(leaves[0::2], leaves[1::2]):
        gate, up = F.linear(F.rms_norm(h, h.shape[-1:]), gate_up).chunk(2, dim=-1)
        h = h + F.linear(F.silu(gate) * up, down)
    h.backward(grad_out)


def _leaves(weights: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """Each weight as a fresh autograd leaf sharing its storage (the inputs stay untouched)."""
    return [w.detach().requires_grad_() for w in weights]


def baseline_allreduce_after_backward(x: torch.Tensor, grad_out: torch.Tensor,
                                      *weights: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The whole backward, then one blocking all-reduce per weight gradient."""
    leaves = _leaves(weights)
    _forward_backward(x, grad_out, leaves)
    for leaf in leaves:
        dist.all_reduce(leaf.grad)
    return tuple(leaf.grad for leaf in leaves)


def optimized_allreduce_in_backward_hooks(x: torch.Tensor, grad_out: torch.Tensor,
                                          *weights: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """An async all-reduce launched from each weight's post-accumulate-grad hook; every handle waited on."""
    leaves = _leaves(weights)
    pending = []

    def launch(leaf: torch.Tensor) -> None:
        pending.append(dist.all_reduce(leaf.grad, async_op=True))

    for leaf in leaves:
        leaf.register_post_accumulate_grad_hook(launch)
    _forward_backward(x, grad_out, leaves)
    for handle in pending:
        handle.wait()
    return tuple(leaf.grad for leaf in leaves)


def compute_only_forward_backward(x: torch.Tensor, grad_out: torch.Tensor,
                                  *weights: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The same forward and backward without any all-reduce: each rank's own gradients (the pair's computation alone,
    which the report subtracts from the baseline to tell the all-reduces' time)."""
    leaves = _leaves(weights)
    _forward_backward(x, grad_out, leaves)
    return tuple(leaf.grad for leaf in leaves)


def work(shape: tuple[int, ...], dtype: str, *, world: int) -> Work:
    """Forward (2 flops per multiply-add of the three projections) plus backward (twice forward, less layer 0's
    input gradient, which nothing needs); the bytes are what each rank sends over the interconnect: the
    all-reduce's bus bytes, 2 (n - 1) / n of the gradients."""
    tokens, hidden, ffn, layers = shape
    per_layer = 6 * tokens * hidden * ffn
    grads = itemsize(dtype) * 3 * hidden * ffn * layers
    return Work(bytes=float(grads * 2 * (world - 1) / world), flops=float(per_layer * (3 * layers - 1)))
