"""Chapter 8: occupancy and ILP.

- launch_configuration: SwiGLU in one-warp blocks (half the SM's warp slots) vs 256-thread blocks.
- branch_divergence: a stable softplus with a sign branch (divergent warps run both sides) vs one branch-free formula.
- loop_unrolling: an FIR filter with a runtime tap count vs a compile-time count, fully unrolled (taps in registers).
- tiled_matmul: an fp32 matmul with one output per thread from global memory vs shared-memory tiles, 4 x 4 per thread.

Each kernel module's header has the napkin math and the predicted H100 speedup; ``min_speedup`` here is the
conservative floor, the claim that the technique wins at all on any recent GPU. Every case runs CUDA kernels.
"""

from __future__ import annotations

import pytest

from kernels.ch08 import branch_divergence, launch_configuration, loop_unrolling, tiled_matmul
from pytest_aiperf import Case

CASES = [
    Case(name="launch_configuration", baseline=launch_configuration.baseline_warp_sized_blocks,
         optimized=launch_configuration.optimized_full_blocks, inputs=launch_configuration.inputs,
         reference=launch_configuration.reference, work=launch_configuration.work, needs_cuda=True,
         check_shapes=[(3, 17), (1, 1), (33, 257)], time_shapes=[(4096, 11008)], dtypes=["fp32"], min_speedup=1.15),
    Case(name="branch_divergence", baseline=branch_divergence.baseline_sign_branch,
         optimized=branch_divergence.optimized_branch_free, inputs=branch_divergence.inputs,
         reference=branch_divergence.reference, work=branch_divergence.work, needs_cuda=True,
         check_shapes=[(3, 17), (1, 9), (37, 257)], time_shapes=[(16384, 5120)], dtypes=["bf16"], min_speedup=1.2),
    Case(name="loop_unrolling", baseline=loop_unrolling.baseline_rolled_taps,
         optimized=loop_unrolling.optimized_unrolled_taps, inputs=loop_unrolling.inputs,
         reference=loop_unrolling.reference, work=loop_unrolling.work, needs_cuda=True,
         check_shapes=[(3, 31, 31), (1, 4099, 15), (5, 70001, 31)], time_shapes=[(16, 1048576, 31)],
         dtypes=["fp32"], min_speedup=1.15),
    Case(name="tiled_matmul", baseline=tiled_matmul.baseline_global_memory,
         optimized=tiled_matmul.optimized_shared_tiles, inputs=tiled_matmul.inputs,
         reference=tiled_matmul.reference, work=tiled_matmul.work, needs_cuda=True,
         check_shapes=[(17, 9, 13), (65, 33, 129), (1, 70, 3)], time_shapes=[(2048, 2048, 2048)],
         dtypes=["fp32"], min_speedup=1.5),
]


@pytest.mark.perf_pair(*CASES)
def test_optimized_arm_beats_baseline(pair, aiperf):
    aiperf.run(pair)
