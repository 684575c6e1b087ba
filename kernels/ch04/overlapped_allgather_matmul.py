"""All-gather overlapped with matmul: a sequence-parallel column-parallel linear layer, gathered then multiplied vs
gathered in row chunks by NCCL's all-gather while the chunks already gathered are multiplied.

- Baseline: Megatron-LM's sequence-parallel ``ColumnParallelLinear`` without communication overlap: a blocking
  all-gather of every rank's token shard into the full activation, then one GEMM with this rank's column shard of
  the weight. The GEMM waits for the whole gather; the bus idles during the GEMM. Bound by gather + GEMM.
- Optimized: the all-gather split into ``CHUNKS`` (4) all-gathers of row chunks of every shard (the pipelined
  variant of the "collective matmul" of async tensor parallelism), each chunk multiplied as soon as it has
  arrived. Bound by the larger of the gather and the GEMM, plus ~1/4 of the smaller (the first chunk's gather, the
  last chunk's GEMM).

Mechanism: the chunk all-gathers are issued async all at once (issuing one ahead would make each wait for the
GEMM enqueued before it), so they run back to back on NCCL's stream; the compute stream waits on each handle
(an event, no host sync) before that chunk's GEMM. Chunk ``c``'s buffer holds every rank's rows of chunk ``c`` in
rank order; one batched GEMM (a batch per rank, the weight broadcast with batch stride 0) writes each rank's rows
into that rank's block of the output (batch stride ``rows x out_features``), so the output is laid out as the
baseline's with no extra bytes moved; the chunk buffers together are the baseline's gathered activation. Shards
not divisible by 4 get uneven chunks; shards of fewer than 4 rows get one chunk per row.

Finding: a ring of NCCL ``batch_isend_irecv`` steps (the previous optimized arm) lost, 0.63x on 4 H200s: NCCL
send/recv measured 105 GB/s on 2 ranks and 75 GB/s on 4 (``direct_peer_transfer``), a quarter to a third of a
collective's bus bandwidth (NCCL gives point-to-point few channels), so every ring step was transfer-bound.

Shape ``(tokens, hidden, out_features)``, bf16: the sequence of ``tokens`` split evenly over the ``n`` ranks (each
holds ``tokens / n``) and the weight's ``out_features`` rows split evenly too (each rank computes ``out_features / n``
columns of the output for every token). Timing shape (16384, 4096, 6144): Llama-3-8B's QKV projection (4096 -> 32
query heads + 8 key and 8 value heads of 128 = 6144 features) over 8 sequences of 2048 tokens, on 2 or 4
tensor-parallel ranks.

Napkin math on H200s linked by NVLink 4 through NVSwitch (NVLink multicast off). Measured today: the bus bandwidth
of a 256 MB all-reduce, ~288 GB/s on 2 ranks and ~316 GB/s on 4; the baseline, 0.91 ms on 2 and 0.71 ms on 4.
Estimates: the all-gather's bus bandwidth as the all-reduce's (a 33.5 MB chunk gather near it), the GEMMs at ~650
TFLOP/s of bf16, ~10% of the GEMM lost to NCCL's SMs where they overlap.
- work per rank: 2 x 16384 x 4096 x 6144 / n = 0.41 TFLOP on 2 ranks (~0.63 ms), 0.21 TFLOP on 4 (~0.32 ms); the
  gathered activation is 134 MB, of which a rank receives (n - 1) / n: 67 MB on 2 ranks, 100 MB on 4.
- baseline: the gather (67 MB at ~288 GB/s: ~0.23 ms on 2 ranks; 100 MB at ~316 GB/s: ~0.32 ms on 4) then the
  GEMM: ~0.86 ms on 2 ranks, ~0.64 ms on 4 (measured 0.91 and 0.71).
- optimized on 2 ranks, GEMM-bound: the first chunk's gather (~0.06 ms), then the four chunk GEMMs (~0.63 ms, the
  three beside NCCL ~0.05 ms slower): ~0.74 ms. On 4, balanced: the first chunk's gather (~0.08 ms), three chunk
  GEMMs beside the next gathers (~0.26 ms with NCCL's share) and the last chunk's GEMM (~0.08 ms): ~0.42 ms, ~0.45
  ms with a few us of launch and NCCL ramp per chunk.
- predicted speedup over the measured baseline: ~1.2x on 2 H200s, ~1.5x on 4 (the gather's share grows with the
  ranks).
- ``compute_only_gemm`` times the GEMM alone (~0.63 / ~0.32 ms), so the report can tell the baseline's gather time,
  its bus bandwidth, and the share of it the optimized arm hides.

Measured (4x H200 VM, NVLink 4 via NVSwitch, NVLS off, torch 2.11, NCCL 2.28.9; 2026-11-21, commits 316153b and
0bd6377, two processes): a loss on both world sizes, recorded as measured: 862-867 us -> 932-938 us on 2 ranks
(0.92-0.93x), 648-691 us -> 682-845 us on 4 (0.82-0.95x), against the predicted ~1.2x / ~1.5x. The compute-only probe
shows the baseline's all-gather already fast (252-254 GB/s on 2 ranks, 312-333 GB/s on 4: 86-87% and 98-103% of the
all-reduce bus bandwidth), so there is little to hide (~0.2-0.3 ms), and the chunked arm's GEMMs plus the NCCL kernels
beside them take longer than the gather they hide ("comm hidden" -26% and -27% on 2 ranks, -51% and -11% on 4). Why
the GEMMs slow down (the four smaller batched GEMMs with a strided output, or NCCL's SMs) is not profiled yet. The
ring of send/recv it replaced measured 1.10x on 2 ranks and 0.63x on 4 (commit 11d7741).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from kernels import itemsize, normal, seeded
from kernels.ch04.ranks import all_gather_flat, rank_seeded
from pytest_aiperf import Work

CHUNKS = 4  # 33.5 MB per chunk gather (NCCL near full rate); 1/4 of the smaller term exposed; GEMMs of >1 wave


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


def optimized_chunked_allgather_matmul(x_shard: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The token shard gathered in up to ``CHUNKS`` row chunks (async NCCL all-gathers, all issued at once), each
    chunk multiplied as soon as its gather is waited on, by one batched GEMM writing every rank's rows of the chunk
    straight into that rank's block of output rows (a strided destination: no extra bytes)."""
    world, rows = dist.get_world_size(), x_shard.shape[0]
    out = torch.empty((world * rows, weight.shape[0]), dtype=x_shard.dtype, device=x_shard.device)
    chunks = min(CHUNKS, rows)
    bounds = [rows * c // chunks for c in range(chunks + 1)]
    pending = []
    for start, end in zip(bounds, bounds[1:]):
        gathered = torch.empty((world, end - start, x_shard.shape[1]), dtype=x_shard.dtype, device=x_shard.device)
        pending.append((start, end, gathered, all_gather_flat(gathered.view(-1, x_shard.shape[1]),
                                                              x_shard[start:end], async_op=True)))
    per_rank = out.view(world, rows, weight.shape[0])
    weight_t = weight.t().expand(world, *weight.t().shape)
    for start, end, gathered, handle in pending:
        handle.wait()
        torch.bmm(gathered, weight_t, out=per_rank[:, start:end])
    return out


def compute_only_gemm(x_shard: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """This rank's GEMM without any gather: its own shard stands in for every rank's (batch stride 0, as the weight's),
    so one batched GEMM has the optimized arm's shapes over all rows, on real data, and moves no extra bytes."""
    world, rows = dist.get_world_size(), x_shard.shape[0]
    out = torch.empty((world * rows, weight.shape[0]), dtype=x_shard.dtype, device=x_shard.device)
    torch.bmm(x_shard.expand(world, *x_shard.shape), weight.t().expand(world, *weight.t().shape),
              out=out.view(world, rows, weight.shape[0]))
    return out


def work(shape: tuple[int, ...], dtype: str, *, world: int) -> Work:
    """One rank's GEMM (2 flops per multiply-add) and what it receives over the interconnect: the other ranks'
    token shards, (n - 1) / n of the gathered activation (the all-gather's bus bytes)."""
    tokens, hidden, out_features = shape
    return Work(bytes=float(itemsize(dtype) * tokens * hidden * (world - 1) / world),
                flops=float(2 * tokens * hidden * out_features / world))
