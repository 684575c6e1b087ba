"""Chapter 11: streams and concurrency.

- pipelined_copy_compute: host rows up, a layer, results down as one serial pass vs 8 chunks over three streams.
- stream_ordered_allocator: cudaMalloc/cudaFree of a per-step scratch (a device sync each step) vs a retained pool.
- concurrent_expert_streams: a graph-captured MoE layer's small per-expert MLPs on one stream vs forked over four.
- overlapped_snapshot_staging: checkpoint staging D2H then the next forward vs both at once on two streams.
- bidirectional_copy_streams: a D2H and an H2D copy on one stream vs one stream per direction (both copy engines).
- side_stream_ema: the weights' moving average updated before the next forward vs on a side stream beside it.

Every variant forks its side streams from torch's current stream and joins them back before returning, so the
events on the current stream time the whole call. Each kernel module's header has the napkin math and the predicted
H100 speedup; ``min_speedup`` here is the conservative floor, the claim that the technique wins at all on any recent
GPU; a case that measured below it on some GPU says why in ``known_loss``.
"""

from __future__ import annotations

import pytest

from kernels.ch11 import (bidirectional_copy_streams, concurrent_expert_streams, overlapped_snapshot_staging,
                          pipelined_copy_compute, side_stream_ema, stream_ordered_allocator)
from pytest_aiperf import Case

CASES = [
    Case(name="pipelined_copy_compute", baseline=pipelined_copy_compute.baseline_serial_one_stream,
         optimized=pipelined_copy_compute.optimized_chunked_three_streams, inputs=pipelined_copy_compute.inputs,
         reference=pipelined_copy_compute.reference, work=pipelined_copy_compute.work, needs_cuda=True,
         check_shapes=[(37, 24), (5, 9), (1, 1)], time_shapes=[(16384, 4096)], dtypes=["bf16"], min_speedup=1.3),
    Case(name="stream_ordered_allocator", baseline=stream_ordered_allocator.baseline_malloc_free_per_step,
         optimized=stream_ordered_allocator.optimized_stream_ordered_pool, inputs=stream_ordered_allocator.inputs,
         reference=stream_ordered_allocator.reference, work=stream_ordered_allocator.work, needs_cuda=True,
         check_shapes=[(3, 17), (1, 1), (5, 70001)], time_shapes=[(32, 4194304)], dtypes=["fp32"],
         host_dispatch="timed", min_speedup=1.5),
    Case(name="concurrent_expert_streams", baseline=concurrent_expert_streams.baseline_experts_one_stream,
         optimized=concurrent_expert_streams.optimized_experts_four_streams, inputs=concurrent_expert_streams.inputs,
         reference=concurrent_expert_streams.reference, work=concurrent_expert_streams.work, needs_cuda=True,
         check_shapes=[(7, 5, 24, 16), (3, 1, 8, 40), (9, 3, 33, 17)], time_shapes=[(128, 256, 2048, 768)],
         dtypes=["bf16"], min_speedup=1.3),
    Case(name="overlapped_snapshot_staging", baseline=overlapped_snapshot_staging.baseline_stage_then_forward,
         optimized=overlapped_snapshot_staging.optimized_stage_beside_forward,
         inputs=overlapped_snapshot_staging.inputs, reference=overlapped_snapshot_staging.reference,
         work=overlapped_snapshot_staging.work, needs_cuda=True,
         check_shapes=[(5, 24, 40), (1, 8, 3), (33, 16, 9)], time_shapes=[(16384, 4096, 14336)], dtypes=["bf16"],
         min_speedup=1.3),
    Case(name="bidirectional_copy_streams", baseline=bidirectional_copy_streams.baseline_one_stream,
         optimized=bidirectional_copy_streams.optimized_stream_per_direction,
         inputs=bidirectional_copy_streams.inputs, reference=bidirectional_copy_streams.reference,
         work=bidirectional_copy_streams.work, needs_cuda=True,
         check_shapes=[(17,), (1,), (100003,)], time_shapes=[(218103808,)], dtypes=["bf16"], min_speedup=1.3),
    Case(name="side_stream_ema", baseline=side_stream_ema.baseline_ema_then_forward,
         optimized=side_stream_ema.optimized_ema_on_side_stream, inputs=side_stream_ema.inputs,
         work=side_stream_ema.work, needs_cuda=True,
         check_shapes=[(5, 24, 40), (1, 8, 3), (33, 16, 9)], time_shapes=[(4096, 4096, 14336)], dtypes=["bf16"],
         min_speedup=1.05,
         known_loss="a tie: 1.01x on the H100 (1.00-1.02x over four processes) and 1.01-1.03x on an H200; the side "
                    "stream hid ~0.03-0.07 ms (derived) of the ~0.7 ms EMA, likely because the forward's GEMMs leave "
                    "the EMA's blocks almost no SM to run on (not profiled)"),
]


@pytest.mark.perf_pair(*CASES)
def test_optimized_arm_beats_baseline(pair, aiperf):
    aiperf.run(pair)
