"""All-gather overlapped with matmul: a sequence-parallel column-parallel linear layer, gathered then multiplied vs
gathered shard by shard around a ring while the shard in hand is multiplied.

- Baseline: Megatron-LM's sequence-parallel ``ColumnParallelLinear`` without communication overlap: a blocking
  all-gather of every rank's token shard into the full activation, then one GEMM with this rank's column shard of
  the weight. The GEMM waits for the whole gather; the bus idles during the GEMM. Bound by gather + GEMM.
- Optimized: the all-gather decomposed into ``n - 1`` ring steps (the "collective matmul" of async tensor
  parallelism, as in torch's ``fused_all_gather_matmul`` and Megatron's ``tp_comm_overlap``): at each step this rank
  sends the shard it holds to the next rank and receives the next shard from the previous one (async
  ``batch_isend_irecv``), while it multiplies the shard in hand into its block of output rows. Every shard's rows
  are contiguous in the output, so each GEMM writes its block in place. Handles are waited on before the next step
  reuses a buffer. Bound by ``n`` x the slower of one shard's transfer and one shard's GEMM.

Shape ``(tokens, hidden, out_features)``, bf16: the sequence of ``tokens`` split evenly over the ``n`` ranks (each
holds ``tokens / n``) and the weight's ``out_features`` rows split evenly too (each rank computes ``out_features / n``
columns of the output for every token). Timing shape (16384, 4096, 6144): Llama-3-8B's QKV projection (4096 -> 32
query heads + 8 key and 8 value heads of 128 = 6144 features) over 8 sequences of 2048 tokens, on 2 or 4
tensor-parallel ranks.

Napkin math on H200s linked by NVLink/NVSwitch (bf16 ~800 TFLOP/s, ~650 reached by these GEMMs; NCCL bus bandwidth
~400 GB/s; peer-to-peer ~350 GB/s per direction; per-collective latency ~15-30 us):
- work per rank: 2 x 16384 x 4096 x 6144 / n = 0.41 TFLOP on 2 ranks (~0.63 ms), 0.21 TFLOP on 4 (~0.32 ms); the
  gathered activation is 134 MB, of which a rank receives (n - 1) / n.
- baseline: the all-gather ((n - 1) / n x 134 MB at ~400 GB/s: ~0.17 ms on 2 ranks, ~0.25 ms on 4) then the GEMM:
  ~0.8 ms on 2 ranks, ~0.57 ms on 4.
- optimized on 2 ranks: the local half's GEMM (~0.32 ms) beside the 67 MB exchange (~0.19 ms), then the received
  half's GEMM (~0.32 ms): ~0.64 ms. On 4: three steps of max(GEMM ~0.08 ms, 33.5 MB at ~350 GB/s ~0.1 ms) and a
  last GEMM: ~0.38 ms, plus a few us of launch per step.
- predicted speedup: ~1.25x on 2 H200s, ~1.45x on 4 (the gather's share grows with the ranks), less what NCCL's SMs
  take from the GEMMs they run beside.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from kernels import itemsize, normal, seeded
from kernels.ch04.ranks import all_gather_flat, rank_seeded
from pytest_aiperf import Work


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's token shard of the activation and its row shard of the weight (``out_features / n x hidden``)."""
    tokens, hidden, out_features = shape
    world, rank = dist.get_world_size(), dist.get_rank()
    if tokens % world or out_features % world:
        raise ValueError(f"tensor parallelism splits {tokens} tokens and {out_features} features evenly over {world} "
                         f"ranks: it cannot")
    x_shard = normal(rank_seeded(seed), (tokens // world, hidden), dtype, device)
    weight = normal(seeded(seed), (out_features, hidden), dtype, device, std=hidden**-0.5)
    per_rank = out_features // world
    return x_shard, weight[rank * per_rank:(rank + 1) * per_rank].clone()


def baseline_allgather_then_matmul(x_shard: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """A blocking all-gather of the token shards, then one GEMM."""
    full = torch.empty((dist.get_world_size() * x_shard.shape[0], x_shard.shape[1]), dtype=x_shard.dtype,
                       device=x_shard.device)
    all_gather_flat(full, x_shard)
    return full @ weight.t()


def optimized_ring_allgather_matmul(x_shard: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Ring steps: send the shard in hand on, receive the next, multiply the shard in hand meanwhile."""
    world, rank = dist.get_world_size(), dist.get_rank()
    rows = x_shard.shape[0]
    out = torch.empty((world * rows, weight.shape[0]), dtype=x_shard.dtype, device=x_shard.device)
    buffers = [torch.empty_like(x_shard), torch.empty_like(x_shard)]
    held = x_shard
    for step in range(world):
        source = (rank - step) % world  # whose shard is in hand
        pending = []
        if step < world - 1:
            incoming = buffers[step % 2]
            pending = dist.batch_isend_irecv([dist.P2POp(dist.isend, held, (rank + 1) % world),
                                              dist.P2POp(dist.irecv, incoming, (rank - 1) % world)])
        torch.mm(held, weight.t(), out=out[source * rows:(source + 1) * rows])
        for handle in pending:
            handle.wait()
        if step < world - 1:
            held = incoming
    return out


def work(shape: tuple[int, ...], dtype: str, *, world: int) -> Work:
    """One rank's GEMM (2 flops per multiply-add) and what it receives over the interconnect: the other ranks'
    token shards, (n - 1) / n of the gathered activation (the all-gather's bus bytes)."""
    tokens, hidden, out_features = shape
    return Work(bytes=float(itemsize(dtype) * tokens * hidden * (world - 1) / world),
                flops=float(2 * tokens * hidden * out_features / world))
