"""Chapter 3: system tuning, how the host feeds the GPU.

- overlapped_prefetch: pageable blocking copies then compute vs pinned copies on a side stream under the compute.
- pinned_staging_reuse: a fresh pageable batch and blocking upload per step vs gathering into reused pinned buffers.
- dataloader_workers: CIFAR augmentation in the training process vs four persistent DataLoader workers, pinned.
- intra_op_threads: Whisper's log-mel front end on one CPU thread vs one thread per physical core.

What a cloud VM cannot show (NUMA binding, IRQ affinity, the CPU governor, huge pages) is listed in
``kernels/ch03/__init__.py``. Each kernel module's header has the napkin math and the predicted H100 speedup;
``min_speedup`` here is the conservative floor, the claim that the technique wins at all on any recent GPU host.

Every arm here does host work that is part of the lesson, so each case declares ``host_dispatch="timed"``: the
events start when the host starts the call.
"""

from __future__ import annotations

import pytest

from kernels.ch03 import dataloader_workers, intra_op_threads, overlapped_prefetch, pinned_staging_reuse
from pytest_aiperf import Case

CASES = [
    Case(name="overlapped_prefetch", baseline=overlapped_prefetch.baseline_copy_then_compute,
         optimized=overlapped_prefetch.optimized_overlapped_prefetch, inputs=overlapped_prefetch.inputs,
         work=overlapped_prefetch.work, needs_cuda=True,
         check_shapes=[(3, 5, 3, 16, 48), (1, 3, 1, 32, 16), (5, 1, 3, 48, 32)], time_shapes=[(8, 32, 3, 224, 224)],
         dtypes=["fp32"], host_dispatch="timed", min_speedup=1.5),
    Case(name="pinned_staging_reuse", baseline=pinned_staging_reuse.baseline_fresh_pageable,
         optimized=pinned_staging_reuse.optimized_reused_pinned, inputs=pinned_staging_reuse.inputs,
         reference=pinned_staging_reuse.reference, work=pinned_staging_reuse.work,
         check_shapes=[(3, 5, 9, 13), (1, 3, 1, 7), (5, 1, 5, 3)], time_shapes=[(8, 32, 224, 224)],
         dtypes=["fp32"], host_dispatch="timed", min_speedup=1.2),
    Case(name="dataloader_workers", baseline=dataloader_workers.baseline_in_process,
         optimized=dataloader_workers.optimized_worker_processes, inputs=dataloader_workers.inputs,
         reference=dataloader_workers.reference, work=dataloader_workers.work, goal="throughput",
         check_shapes=[(3, 5, 9, 13), (1, 3, 1, 7), (2, 7, 5, 3)], time_shapes=[(4, 128, 32, 32)],
         dtypes=["fp32"], host_dispatch="timed", min_speedup=1.5),
    Case(name="intra_op_threads", baseline=intra_op_threads.baseline_one_thread,
         optimized=intra_op_threads.optimized_sized_threads, inputs=intra_op_threads.inputs,
         work=intra_op_threads.work,
         check_shapes=[(3, 1601), (1, 977), (2, 4001)], time_shapes=[(2, 480000)],
         dtypes=["fp32"], host_dispatch="timed", min_speedup=1.3),
]


@pytest.mark.perf_pair(*CASES)
def test_optimized_arm_beats_baseline(pair, aiperf):
    aiperf.run(pair)
