"""Sharded optimizer update (ZeRO-2 / FSDP): all-reduce + the full AdamW update on every rank vs reduce-scatter +
the update of this rank's shard + all-gather of the updated parameters.

- Baseline: plain data parallelism: the flat fp32 gradients all-reduced (on a copy: the all-reduce works in place),
  then every rank runs the same AdamW update over all the parameters. Each rank repeats the others' update.
  Bound by the all-reduce plus the full update's HBM traffic.
- Optimized: the gradients reduce-scattered, so this rank receives the sum of only its ``1 / n`` shard (no copy: the
  reduce-scatter reads its input and writes the shard), AdamW over that shard, and the updated shards all-gathered
  into the full parameters (written in place into the gathered buffer, as FSDP does). A reduce-scatter and an
  all-gather move together what one all-reduce moves (NCCL's ring all-reduce is exactly those two phases), so the
  saving is the update's ``(n - 1) / n``, and the optimizer states need only be kept for the shard.
  Bound by the two collectives plus ``1 / n`` of the update. A size not divisible by the ranks is padded, as
  FSDP's flat parameters are.

AdamW (lr 1e-3, betas 0.9 / 0.95, eps 1e-8, weight decay 0.1, step 10) written as torch.optim's single-tensor path
computes it, out of place: ~21 passes over fp32 data, HBM-bound. Both arms return the updated parameters, full, on
every rank; the moments' updates are computed as the parameters need them.

Shape ``(numel,)``, fp32 (master weights, gradients and both moments). Timing shape (218103808,): one Llama-3-8B
decoder layer's seven weight matrices (218 M parameters, 872 MB per tensor).

Napkin math on H200s linked by NVLink/NVSwitch (NCCL bus bandwidth ~400 GB/s: an all-reduce of S bytes takes
~2 (n - 1) / n x S / 400 GB/s, a reduce-scatter or an all-gather half that; H200 HBM ~4.0 TB/s):
- work: an 872 MB gradient message; the update reads and writes ~21 x 872 MB = 18.3 GB over the full tensor.
- baseline: the copy (~0.44 ms), the all-reduce (~2.2 ms on 2 ranks, ~3.3 ms on 4), the update (~4.6 ms):
  ~7.2 / ~8.3 ms.
- optimized: reduce-scatter (~1.1 / ~1.6 ms), the update of the shard (~2.3 / ~1.15 ms), all-gather (~1.1 /
  ~1.6 ms): ~4.5 / ~4.4 ms.
- predicted speedup: ~1.6x on 2 H200s, ~1.9x on 4. With a fused AdamW (7 passes, ~1.5 ms over the full tensor)
  the update shrinks and so does the gain: ~1.2x / ~1.4x.

Measured (4x H200 VM, NVLink 4 via NVSwitch, NVLS off, torch 2.11, NCCL 2.28.9; 2026-11-21, commits 11d7741, 316153b
and 0bd6377, three processes): 7.16-7.20 ms -> 5.23-5.31 ms on 2 ranks (1.35-1.37x), 8.19-8.25 ms -> 5.09-5.19 ms on 4
(1.59-1.61x), below the predicted ~1.6x / ~1.9x: the optimized step, shard update included, moves its interconnect
bytes at 56% (2 ranks) and 76-79% (4 ranks) of the all-reduce bus bandwidth, where the napkin math assumed all of it
for the collectives alone (the split between collectives and update is not measured).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from kernels import itemsize, normal, seeded
from kernels.ch04.ranks import all_gather_flat, rank_seeded, reduce_scatter_flat
from pytest_aiperf import Work

LR, BETA1, BETA2, EPS, WEIGHT_DECAY, STEP = 1e-3, 0.9, 0.95, 1e-8, 0.1, 10
BIAS1, BIAS2 = 1 - BETA1**STEP, 1 - BETA2**STEP


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor, ...]:
    """The parameters and both Adam moments (the same on every rank), then this rank's gradient."""
    shared = seeded(seed)
    params = normal(shared, shape, dtype, device, std=2e-2)
    exp_avg = normal(shared, shape, dtype, device, std=1e-3)
    exp_avg_sq = normal(shared, shape, dtype, device, std=1e-3).square_()
    grads = normal(rank_seeded(seed), shape, dtype, device, std=1e-2)
    return params, exp_avg, exp_avg_sq, grads


def _adamw(params: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, grads: torch.Tensor,
           out: torch.Tensor | None = None) -> torch.Tensor:
    """One AdamW step, out of place: the updated parameters (into ``out`` if given)."""
    exp_avg = torch.lerp(exp_avg, grads, 1 - BETA1)
    exp_avg_sq = torch.addcmul(exp_avg_sq * BETA2, grads, grads, value=1 - BETA2)
    denom = (exp_avg_sq.sqrt() / BIAS2**0.5).add_(EPS)
    return torch.addcdiv(params * (1 - LR * WEIGHT_DECAY), exp_avg, denom, value=-LR / BIAS1, out=out)


def baseline_allreduce_full_update(params: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
                                   grads: torch.Tensor) -> torch.Tensor:
    """All-reduce the gradients, then the whole AdamW update on this rank."""
    summed = grads.clone()
    dist.all_reduce(summed)
    return _adamw(params, exp_avg, exp_avg_sq, summed)


def optimized_sharded_update(params: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
                             grads: torch.Tensor) -> torch.Tensor:
    """Reduce-scatter the gradients, update this rank's shard, all-gather the updated parameters."""
    world, rank = dist.get_world_size(), dist.get_rank()
    numel = grads.numel()
    shard = -(-numel // world)
    padded = grads if shard * world == numel else F.pad(grads, (0, shard * world - numel))
    grad_shard = torch.empty(shard, dtype=grads.dtype, device=grads.device)
    reduce_scatter_flat(grad_shard, padded)
    start, stop = min(rank * shard, numel), min((rank + 1) * shard, numel)
    gathered = torch.empty(shard * world, dtype=params.dtype, device=params.device)
    mine = gathered[rank * shard:(rank + 1) * shard]
    _adamw(params[start:stop], exp_avg[start:stop], exp_avg_sq[start:stop], grad_shard[:stop - start],
           out=mine[:stop - start])
    all_gather_flat(gathered, mine)
    return gathered[:numel]


def work(shape: tuple[int, ...], dtype: str, *, world: int) -> Work:
    """What each rank sends over the interconnect: (n - 1) / n of the gradients in the reduce-scatter and as much of
    the parameters in the all-gather, the bus bytes of the baseline's all-reduce too."""
    return Work(bytes=float(itemsize(dtype) * shape[0] * 2 * (world - 1) / world))
