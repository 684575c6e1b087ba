"""Chapter 7: memory access.

- coalesced_access: per-row mean of squares, one thread per row (strided warps) vs one warp per row (coalesced).
- vectorized_loads: a residual add with 4-byte loads vs 16-byte float4 loads, same loop and grid.
- tiled_transpose: a naive transpose (strided writes) vs 64x64 shared-memory tiles padded to 65 columns.
- cp_async_double_buffer: a tiled row filter staged synchronously vs prefetched with cp.async into a second buffer.
- tma_bulk_copy: the same tiled row filter staged by every thread vs streamed in by TMA bulk copies and mbarriers.

Each kernel module's header has the napkin math and the predicted H100 speedup; ``min_speedup`` here is the
conservative floor, the claim that the technique wins at all on any recent GPU; a case that measured below it on
some GPU says why in ``known_loss``.
"""

from __future__ import annotations

import pytest

from kernels.ch07 import coalesced_access, cp_async_double_buffer, tiled_transpose, tma_bulk_copy, vectorized_loads
from pytest_aiperf import Case

FILTER_CHECK_SHAPES = [(3, 17), (2, 5003), (7, 1_200_001)]

CASES = [
    Case(name="coalesced_access", baseline=coalesced_access.baseline_thread_per_row,
         optimized=coalesced_access.optimized_warp_per_row, inputs=coalesced_access.inputs,
         reference=coalesced_access.reference, work=coalesced_access.work, needs_cuda=True,
         check_shapes=[(33, 17), (7, 4099), (258, 1028)], time_shapes=[(32768, 4096)],
         dtypes=["fp32"], min_speedup=2.0),
    Case(name="vectorized_loads", baseline=vectorized_loads.baseline_scalar_loads,
         optimized=vectorized_loads.optimized_vector_loads, inputs=vectorized_loads.inputs,
         reference=vectorized_loads.reference, work=vectorized_loads.work, needs_cuda=True,
         check_shapes=[(3, 17), (1, 1), (1000, 1003)], time_shapes=[(32768, 4096)],
         dtypes=["fp32"], min_speedup=1.05),
    Case(name="tiled_transpose", baseline=tiled_transpose.baseline_naive_transpose,
         optimized=tiled_transpose.optimized_tiled_padded_transpose, inputs=tiled_transpose.inputs,
         reference=tiled_transpose.reference, work=tiled_transpose.work, needs_cuda=True,
         check_shapes=[(33, 17), (70, 129), (1, 45)], time_shapes=[(14336, 4096)],
         dtypes=["fp32"], min_speedup=1.3),
    Case(name="cp_async_double_buffer", baseline=cp_async_double_buffer.baseline_sync_staging,
         optimized=cp_async_double_buffer.optimized_cp_async_double_buffer, inputs=cp_async_double_buffer.inputs,
         reference=cp_async_double_buffer.reference, work=cp_async_double_buffer.work, needs_cuda=True,
         check_shapes=FILTER_CHECK_SHAPES, time_shapes=[(64, 2_880_000)], dtypes=["fp32"], min_speedup=1.05,
         known_loss="0.93x on the H100 (508 -> 546 us) and 1.01-1.03x on an H200: the baseline already streams at ~2.9 "
                    "TB/s, ~97% of the H100's copy ceiling, so the prefetch has no HBM latency to hide; the H100 loss "
                    "is likely the persistent loop's per-tile pipeline wait and block barriers (not profiled)"),
    Case(name="tma_bulk_copy", baseline=tma_bulk_copy.baseline_sync_staging,
         optimized=tma_bulk_copy.optimized_tma_bulk_copy, inputs=tma_bulk_copy.inputs,
         reference=tma_bulk_copy.reference, work=tma_bulk_copy.work, needs_cuda=True,
         check_shapes=FILTER_CHECK_SHAPES, time_shapes=[(64, 2_880_000)], dtypes=["fp32"], min_speedup=1.05,
         known_loss="0.95x on the H100 (509 -> 534 us) and 1.01-1.03x on an H200: the baseline already streams at ~2.9 "
                    "TB/s, ~97% of the H100's copy ceiling, so the bulk copies have no HBM latency to hide; the H100 "
                    "loss is likely the ring's per-tile mbarrier wait, block barriers and late stage refill (not "
                    "profiled)"),
]


@pytest.mark.perf_pair(*CASES)
def test_optimized_arm_beats_baseline(pair, aiperf):
    aiperf.run(pair)
