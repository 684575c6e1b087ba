"""Chapter 6: CUDA fundamentals.

- grid_parallelism: SAXPY in one 1024-thread block vs one thread per element over every SM (introductory pair).
- bank_conflicts: a tiled transpose through a 32-word shared-memory tile row vs one padded to 33 words.
- instruction_level_parallelism: a sum of squares with one accumulator vs four fed by independent 16-byte loads.
- warp_shuffle_reduction: per-row sums of squares combined by a shared-memory tree vs by warp shuffles.

Each kernel module's header has the napkin math and the predicted H100 speedup; ``min_speedup`` here is the
conservative floor, the claim that the technique wins at all on any recent GPU. Every case runs CUDA kernels.
"""

from __future__ import annotations

import pytest

from kernels.ch06 import bank_conflicts, grid_parallelism, instruction_level_parallelism, warp_shuffle_reduction
from pytest_aiperf import Case

CASES = [
    Case(name="grid_parallelism", baseline=grid_parallelism.baseline_single_block,
         optimized=grid_parallelism.optimized_full_grid, inputs=grid_parallelism.inputs,
         reference=grid_parallelism.reference, work=grid_parallelism.work, needs_cuda=True,
         check_shapes=[(1,), (1023,), (70001,)], time_shapes=[(16777216,)], dtypes=["fp32"], min_speedup=10.0),
    Case(name="bank_conflicts", baseline=bank_conflicts.baseline_unpadded_tile,
         optimized=bank_conflicts.optimized_padded_tile, inputs=bank_conflicts.inputs,
         reference=bank_conflicts.reference, work=bank_conflicts.work, needs_cuda=True,
         check_shapes=[(33, 65), (1, 7), (70, 31)], time_shapes=[(8192, 8192)], dtypes=["fp32"], min_speedup=1.2),
    Case(name="instruction_level_parallelism", baseline=instruction_level_parallelism.baseline_one_accumulator,
         optimized=instruction_level_parallelism.optimized_four_accumulators,
         inputs=instruction_level_parallelism.inputs, reference=instruction_level_parallelism.reference,
         work=instruction_level_parallelism.work, needs_cuda=True,
         check_shapes=[(3,), (4099,), (1000003,)], time_shapes=[(124439808,)], dtypes=["fp32"], min_speedup=1.5),
    Case(name="warp_shuffle_reduction", baseline=warp_shuffle_reduction.baseline_shared_memory_tree,
         optimized=warp_shuffle_reduction.optimized_warp_shuffles, inputs=warp_shuffle_reduction.inputs,
         reference=warp_shuffle_reduction.reference, work=warp_shuffle_reduction.work, needs_cuda=True,
         check_shapes=[(3, 1000), (5, 37), (2, 4099)], time_shapes=[(65536, 1024)], dtypes=["fp32"],
         min_speedup=1.05),
]


@pytest.mark.perf_pair(*CASES)
def test_optimized_arm_beats_baseline(pair, aiperf):
    aiperf.run(pair)
