"""Chapter 4: distributed training. Every case runs on 2 and on 4 ranks (one process per GPU, NCCL; gloo on the CPU).

- bucketed_gradient_allreduce: GPT-2 small's 148 gradients all-reduced one tensor at a time vs as one flat bucket.
- overlapped_gradient_allreduce: a data-parallel MLP step all-reducing after backward vs from backward's grad hooks.
- bf16_compressed_allreduce: an fp32 gradient all-reduce vs cast to bf16, all-reduced, cast back (declared tolerance).
- overlapped_allgather_matmul: a sequence-parallel linear layer's all-gather then GEMM vs chunked all-gathers under the GEMMs.
- direct_peer_transfer: a pipeline stage's activations handed on through pinned host memory and gloo vs NCCL P2P.
- sharded_optimizer_update: all-reduce + the full AdamW update vs reduce-scatter + shard update + all-gather (ZeRO).

Each kernel module's header has the napkin math and the predicted H200 speedup on 2 and 4 ranks; ``min_speedup``
here is the conservative floor, the claim that the technique wins at all on any recent GPU; a case that measured
below it on some GPU says why in ``known_loss``. The two overlap pairs also time their computation alone
(``compute_only``), for the scaling table's communication columns.
"""

from __future__ import annotations

import pytest

from kernels.ch04 import (bf16_compressed_allreduce, bucketed_gradient_allreduce, direct_peer_transfer,
                          overlapped_allgather_matmul, overlapped_gradient_allreduce, sharded_optimizer_update)
from pytest_aiperf import Case

RANKS = (2, 4)

CASES = [
    Case(name="bucketed_gradient_allreduce", baseline=bucketed_gradient_allreduce.baseline_allreduce_per_tensor,
         optimized=bucketed_gradient_allreduce.optimized_allreduce_flat_bucket,
         inputs=bucketed_gradient_allreduce.inputs, work=bucketed_gradient_allreduce.work, world_sizes=RANKS,
         check_shapes=[(1, 5, 7, 11, 3), (2, 3, 13, 17, 1)], time_shapes=[(12, 768, 3072, 50257, 1024)],
         dtypes=["fp32"], min_speedup=1.5),
    Case(name="overlapped_gradient_allreduce",
         baseline=overlapped_gradient_allreduce.baseline_allreduce_after_backward,
         optimized=overlapped_gradient_allreduce.optimized_allreduce_in_backward_hooks,
         inputs=overlapped_gradient_allreduce.inputs, work=overlapped_gradient_allreduce.work, world_sizes=RANKS,
         check_shapes=[(9, 12, 20, 2), (5, 24, 36, 3)], time_shapes=[(2048, 4096, 14336, 4)], dtypes=["bf16"],
         min_speedup=1.05, compute_only=overlapped_gradient_allreduce.compute_only_forward_backward),
    Case(name="bf16_compressed_allreduce", baseline=bf16_compressed_allreduce.baseline_fp32_allreduce,
         optimized=bf16_compressed_allreduce.optimized_bf16_compressed_allreduce,
         inputs=bf16_compressed_allreduce.inputs, work=bf16_compressed_allreduce.work,
         tolerance=bf16_compressed_allreduce.TOLERANCE, world_sizes=RANKS,
         check_shapes=[(37,), (1,), (5003,)], time_shapes=[(218103808,)], dtypes=["fp32"], min_speedup=1.1),
    Case(name="overlapped_allgather_matmul", baseline=overlapped_allgather_matmul.baseline_allgather_then_matmul,
         optimized=overlapped_allgather_matmul.optimized_chunked_allgather_matmul,
         inputs=overlapped_allgather_matmul.inputs, work=overlapped_allgather_matmul.work, world_sizes=RANKS,
         check_shapes=[(12, 7, 20), (4, 3, 4), (20, 9, 8)], time_shapes=[(16384, 4096, 6144)], dtypes=["bf16"],
         min_speedup=1.1, compute_only=overlapped_allgather_matmul.compute_only_gemm,
         known_loss="0.925x on 2 H200s and 0.884x on 4 (0.82-0.95x over two processes): the baseline's all-gather "
                    "already runs at 86-103% of the all-reduce bus bandwidth, leaving ~0.2-0.3 ms to hide, and the "
                    "chunked arm's GEMMs beside the NCCL kernels take longer than that; why they slow down is not "
                    "profiled"),
    Case(name="direct_peer_transfer", baseline=direct_peer_transfer.baseline_host_staged,
         optimized=direct_peer_transfer.optimized_device_to_device, inputs=direct_peer_transfer.inputs,
         work=direct_peer_transfer.work, world_sizes=RANKS, host_dispatch="timed",
         check_shapes=[(3, 17), (1, 1), (9, 130)], time_shapes=[(4096, 4096)], dtypes=["bf16"], min_speedup=5.0),
    Case(name="sharded_optimizer_update", baseline=sharded_optimizer_update.baseline_allreduce_full_update,
         optimized=sharded_optimizer_update.optimized_sharded_update, inputs=sharded_optimizer_update.inputs,
         work=sharded_optimizer_update.work, world_sizes=RANKS,
         check_shapes=[(37,), (1,), (4099,)], time_shapes=[(218103808,)], dtypes=["fp32"], min_speedup=1.2),
]


@pytest.mark.perf_pair(*CASES)
def test_optimized_arm_beats_baseline(pair, aiperf):
    aiperf.run(pair)
