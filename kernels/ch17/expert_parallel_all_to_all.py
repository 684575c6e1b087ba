"""Expert parallelism: every rank's tokens all-gathered and the outputs reduce-scattered vs an all-to-all dispatch of
the routed rows to the ranks owning their experts and an all-to-all combine.

- Baseline: naive expert parallelism: all-gather every rank's tokens and routing, each rank runs its own experts on
  the gathered rows routed to them (selected with ``nonzero``, a host sync) and adds them, weighted, into a
  (world x tokens, hidden) partial output, which a reduce-scatter sums and hands back to the ranks owning the tokens.
  Every rank receives every other rank's tokens and sends back a full-size partial.
- Optimized: the dispatch/combine of Megatron-LM's and DeepEP's token dispatchers: sort the routed (token, slot)
  rows by expert (so by owning rank), exchange the per-rank counts (a small all-to-all, read back: the split sizes
  ``all_to_all_single`` takes are host lists), send each row to its expert's rank, run the local experts, send the
  rows back by the reverse all-to-all, and sum each token's ``top_k`` rows weighted by the router at home. Only
  routed rows move: ``top_k x (n - 1) / n`` rows per token each way, against ``n - 1`` each way for the baseline.
- Mechanism: bytes on the interconnect; both arms run the same expert computation (``moe.grouped_swiglu``: the local
  experts' rows sorted by expert, two grouped GEMMs).

Shape ``(tokens_per_rank, experts, top_k, hidden, ffn)``, bf16: each rank holds ``tokens_per_rank`` tokens and
``experts / n`` experts. Timing shape (4096, 16, 1, 5120, 8192): a Llama-4-Scout MoE layer (16 routed experts, top-1,
hidden 5120, expert FFN 8192; its shared expert, the same on every rank, is left out) over a 4096-token chunk per
rank.

Why top-1 and few experts: the all-to-all sends ``top_k x (n - 1) / n`` rows per token each way, the baseline
``n - 1``: the dispatch wins on bytes only where ``top_k < n``. At 2-4 GPUs that excludes the top-6/top-8 many-expert
models (Qwen3, DeepSeek), whose expert parallelism spans 16-64 GPUs; Mixtral's top-2 saves nothing on 2 ranks.

Napkin math on H100s over NVLink (NCCL all-gather / reduce-scatter bus bandwidth ~300 GB/s, all-to-all ~150-250
GB/s; bf16 GEMMs ~650 TFLOP/s):
- compute per rank, both arms: 4096 rows x 6 x 5120 x 8192 = 1.03 TFLOP: ~1.6 ms (more on the ranks owning the
  popular experts: routing is uneven).
- 4 ranks: the baseline's all-gather receives 3 x 4096 x 5120 x 2 B = 126 MB (~0.42 ms) and its reduce-scatter the
  same (~0.42 ms), plus a ``nonzero`` sync: ~2.5 ms. The all-to-alls move 4096 x 3/4 x 10 KB = 31 MB each way
  (~0.13-0.2 ms each) plus the count exchange and its sync (~0.05-0.1 ms): ~2.0-2.1 ms. Predicted 1.1-1.3x.
- 2 ranks: 42 MB each way for the baseline (~0.14 ms each) against 21 MB (~0.1 ms each): ~1.9 ms against ~1.85 ms,
  predicted 1.0-1.1x: below the floor is possible there; a measurement below it would be recorded as a known loss.
- floor: ``min_speedup`` 1.05 (the rule's minimum; 70% of the 4-rank low end is 0.77).

Precision: both arms in bf16; the baseline sums each token's weighted expert rows by the reduce-scatter, the
optimized arm at home: the default bf16 bound holds.

Not yet measured on a GPU.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from kernels import itemsize, normal, seeded
from kernels.ch04.ranks import all_gather_flat, rank_seeded, reduce_scatter_flat
from kernels.ch17.moe import expert_weights, grouped_swiglu, route, router_logits, sort_by_expert
from pytest_aiperf import Work


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[Any, ...]:
    """This rank's tokens and router logits, its own experts' weights (expert e drawn from its own seed, so every
    rank draws only its experts and the draws agree with any other split), and ``top_k``."""
    tokens, experts, top_k, hidden, ffn = shape
    world, rank = dist.get_world_size(), dist.get_rank()
    if experts % world:
        raise ValueError(f"expert parallelism splits {experts} experts evenly over {world} ranks: it cannot")
    gen = rank_seeded(seed)
    x = normal(gen, (tokens, hidden), dtype, device)
    logits = router_logits(gen, tokens, experts, device, bias_gen=seeded(seed))
    local = range(rank * experts // world, (rank + 1) * experts // world)
    drawn = [expert_weights(seeded(seed + 7919 * (expert + 1)), 1, hidden, ffn, dtype, device) for expert in local]
    return x, logits, torch.cat([g for g, _ in drawn]), torch.cat([d for _, d in drawn]), top_k


def _local_rows(x: torch.Tensor, local_ids: torch.Tensor, gate_up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """The local experts' MLPs on routed rows ``x`` (local expert ``local_ids``), in the rows' order."""
    order, ends = sort_by_expert(local_ids, gate_up.shape[0])
    out = torch.empty_like(x)
    out[order] = grouped_swiglu(x[order], ends, gate_up, down)
    return out


def baseline_allgather_reduce_scatter(x: torch.Tensor, logits: torch.Tensor, gate_up: torch.Tensor,
                                      down: torch.Tensor, top_k: int) -> torch.Tensor:
    """All-gather tokens and routing, run the local experts on the rows routed to them, reduce-scatter."""
    world, rank, local = dist.get_world_size(), dist.get_rank(), gate_up.shape[0]
    weights, ids = route(logits, top_k)
    tokens, hidden = x.shape
    all_x = torch.empty((world * tokens, hidden), dtype=x.dtype, device=x.device)
    all_ids = torch.empty((world * tokens, top_k), dtype=ids.dtype, device=x.device)
    all_weights = torch.empty((world * tokens, top_k), dtype=weights.dtype, device=x.device)
    for gathered, mine in ((all_x, x), (all_ids, ids), (all_weights, weights)):
        all_gather_flat(gathered, mine.contiguous())
    flat = all_ids.flatten() - rank * local
    slots = ((flat >= 0) & (flat < local)).nonzero()[:, 0]
    rows = _local_rows(all_x[slots // top_k], flat[slots], gate_up, down)
    partial = torch.zeros_like(all_x)
    partial.index_add_(0, slots // top_k, rows * all_weights.flatten()[slots, None].to(x.dtype))
    out = torch.empty_like(x)
    reduce_scatter_flat(out, partial)
    return out


def optimized_all_to_all_dispatch(x: torch.Tensor, logits: torch.Tensor, gate_up: torch.Tensor,
                                  down: torch.Tensor, top_k: int) -> torch.Tensor:
    """Send each routed row to its expert's rank, run the local experts, send the rows back, combine at home."""
    world, rank, local = dist.get_world_size(), dist.get_rank(), gate_up.shape[0]
    weights, ids = route(logits, top_k)
    tokens, hidden = x.shape
    flat = ids.flatten()
    order = torch.argsort(flat, stable=True)
    send = torch.zeros(world, dtype=torch.int64, device=x.device)
    send.scatter_add_(0, flat // local, torch.ones_like(flat))
    recv = torch.empty_like(send)
    dist.all_to_all_single(recv, send)
    send_splits, recv_splits = send.tolist(), recv.tolist()
    arrived = torch.empty((sum(recv_splits), hidden), dtype=x.dtype, device=x.device)
    dist.all_to_all_single(arrived, x[order // top_k], recv_splits, send_splits)
    arrived_ids = torch.empty(sum(recv_splits), dtype=flat.dtype, device=x.device)
    dist.all_to_all_single(arrived_ids, flat[order], recv_splits, send_splits)
    rows = _local_rows(arrived, arrived_ids - rank * local, gate_up, down)
    returned = torch.empty((tokens * top_k, hidden), dtype=x.dtype, device=x.device)
    dist.all_to_all_single(returned, rows, send_splits, recv_splits)
    unsorted = torch.empty_like(returned)
    unsorted[order] = returned
    return (unsorted.view(tokens, top_k, hidden) * weights[..., None].to(x.dtype)).sum(dim=1)


def work(shape: tuple[int, ...], dtype: str, *, world: int) -> Work:
    """What one rank moves over the interconnect in the optimized arm (its routed rows to other ranks, and back) and
    its share of the experts' flops (``top_k`` rows per token, 2 flops per multiply-add of three GEMMs)."""
    tokens, experts, top_k, hidden, ffn = shape
    moved = 2 * tokens * top_k * (world - 1) / world * hidden
    return Work(bytes=float(itemsize(dtype) * moved), flops=float(6 * tokens * top_k * hidden * ffn))
