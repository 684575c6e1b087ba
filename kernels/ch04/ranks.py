"""Helpers shared by the chapter's kernels: per-rank seeded generators and the flat-tensor collectives.

``all_gather_flat`` and ``reduce_scatter_flat`` are the single-tensor collectives (rank ``r``'s shard at offset
``r * shard`` of the flat output): ``all_gather_single`` / ``reduce_scatter_single`` where torch has them (2.13
deprecates the older names) and ``all_gather_into_tensor`` / ``reduce_scatter_tensor`` before. NCCL implements both
natively (no staging copies, unlike the list forms); gloo supports both in the torch of the CPU checks (2.13).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from kernels import seeded

_ALL_GATHER = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
_REDUCE_SCATTER = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


def rank_seeded(seed: int) -> torch.Generator:
    """A generator for this rank's own data (its batch, its gradients): different on every rank, reproducible."""
    return seeded(seed * 1009 + 7919 * (dist.get_rank() + 1))


def all_gather_flat(output: torch.Tensor, shard: torch.Tensor, async_op: bool = False) -> Any:
    """Every rank's ``shard`` concatenated along dim 0 into ``output`` (rank order)."""
    return _ALL_GATHER(output, shard, async_op=async_op)


def reduce_scatter_flat(shard: torch.Tensor, full: torch.Tensor, async_op: bool = False) -> Any:
    """The sum over ranks of ``full``'s ``rank``-th slice along dim 0, into ``shard``."""
    return _REDUCE_SCATTER(shard, full, async_op=async_op)
