"""Chapter 2: GPU hardware.

- tf32_tensor_cores: an fp32 GEMM on the CUDA cores vs the same GEMM on the tensor cores in TF32 mode.
- pinned_transfer: a host-to-device copy from pageable memory vs one DMA from pinned memory (the host link).
- tuned_copy: a one-float-per-thread copy kernel vs 16-byte vectors with enough bytes in flight (HBM).
- l2_blocking: a three-pass softmax streaming the whole tensor per pass vs the passes over L2-sized row groups.
- peer_copy (2 GPUs, one process): a GPU-to-GPU copy staged through pinned host memory vs peer to peer over NVLink.

Each kernel module's header has the napkin math and the predicted H100 speedup; ``min_speedup`` here is the
conservative floor, the claim that the technique wins at all on any recent GPU; a case that measured below it on
some GPU says why in ``known_loss``.
"""

from __future__ import annotations

import pytest

from kernels.ch02 import l2_blocking, peer_copy, pinned_transfer, tf32_tensor_cores, tuned_copy
from pytest_aiperf import Case, Tolerance

CASES = [
    Case(name="tf32_tensor_cores", baseline=tf32_tensor_cores.baseline_fp32_cuda_cores,
         optimized=tf32_tensor_cores.optimized_tf32_tensor_cores, inputs=tf32_tensor_cores.inputs,
         work=tf32_tensor_cores.work,
         check_shapes=[(17, 9, 13), (31, 257, 19), (5, 3, 7)], time_shapes=[(4096, 4096, 11008)],
         dtypes=["fp32"], min_speedup=2.0,
         tolerance=Tolerance(rel=3e-3, reason="TF32 rounds both fp32 operands to 10 explicit mantissa bits (unit "
                                              "roundoff 2^-11); with fp32 accumulation the error is ~4e-4 of the "
                                              "output's norm")),
    Case(name="pinned_transfer", baseline=pinned_transfer.baseline_pageable_copy,
         optimized=pinned_transfer.optimized_pinned_copy, inputs=pinned_transfer.inputs, work=pinned_transfer.work,
         needs_cuda=True,
         check_shapes=[(3, 17, 9), (1, 5, 1), (2, 129, 65)], time_shapes=[(4, 4096, 4096)],
         dtypes=["bf16"], host_dispatch="timed", min_speedup=1.3),
    Case(name="tuned_copy", baseline=tuned_copy.baseline_simple_copy, optimized=tuned_copy.optimized_tuned_copy,
         inputs=tuned_copy.inputs, reference=tuned_copy.reference, work=tuned_copy.work, needs_cuda=True,
         check_shapes=[(1023,), (1,), (5_000_003,)], time_shapes=[(268_435_456,)],
         dtypes=["fp32"], min_speedup=1.05),
    Case(name="l2_blocking", baseline=l2_blocking.baseline_whole_tensor_passes,
         optimized=l2_blocking.optimized_l2_resident_groups, inputs=l2_blocking.inputs,
         reference=l2_blocking.reference, work=l2_blocking.work, needs_cuda=True,
         check_shapes=[(3, 17), (5, 4099), (7, 2_000_001)], time_shapes=[(1024, 256_000)],
         dtypes=["fp32"], min_speedup=1.1,
         known_loss="0.78x on the H100 (1.48 -> 1.89 ms) and 0.72-0.73x on an H200: per 16-row group the L2 re-reads "
                    "save ~11 us of HBM reads, but the group's three launches are single partial waves whose ramp-up, "
                    "tail and launch gap cost ~5-6 us each (derived from a group-size sweep on the H100, which lost at "
                    "every size from 4 to 64 rows; not profiled)"),
    Case(name="peer_copy", baseline=peer_copy.baseline_host_staged, optimized=peer_copy.optimized_peer_copy,
         inputs=peer_copy.inputs, reference=peer_copy.reference, work=peer_copy.work, needs_cuda=True, devices=2,
         check_shapes=[(3, 5, 7), (8, 2, 1500, 1024)], time_shapes=[(32, 2, 4096, 1024)], dtypes=["bf16"],
         min_speedup=3.0),
]


@pytest.mark.perf_pair(*CASES)
def test_optimized_arm_beats_baseline(pair, aiperf):
    aiperf.run(pair)
