"""Chapter 1: performance basics.

- batched_matmul: 64 small attention-score matmuls in a loop vs one batched matmul (launch overhead).
- microbatch_fusion: an MLP per queued micro-batch vs one MLP on the fused batch (goodput in samples/s).
- tensor_core_bf16: an fp32 GEMM on the CUDA cores vs a bf16 GEMM on the tensor cores (precision for speed).
- pinned_prefetch: pageable blocking host-to-device copies vs pinned staging and async double-buffered copies.
- vectorized_reduction: per-sample losses one sample at a time vs one reduction over the batch.
- elementwise_fusion: GELU as a chain of eager tensor ops vs the one fused library kernel (HBM traffic).

Each kernel module's header has the napkin math and the predicted H100 speedup; ``min_speedup`` here is the
conservative floor, the claim that the technique wins at all on any recent GPU.
"""

from __future__ import annotations

import pytest

from kernels.ch01 import (batched_matmul, elementwise_fusion, microbatch_fusion, pinned_prefetch, tensor_core_bf16,
                          vectorized_reduction)
from pytest_aiperf import Case, Tolerance

CASES = [
    Case(name="batched_matmul", baseline=batched_matmul.baseline_loop_of_matmuls,
         optimized=batched_matmul.optimized_one_bmm, inputs=batched_matmul.inputs, work=batched_matmul.work,
         check_shapes=[(3, 17, 9, 13), (1, 5, 7, 3), (5, 11, 15, 7)], time_shapes=[(64, 128, 64, 128)],
         dtypes=["fp32"], min_speedup=4.0, host_dispatch="timed"),
    Case(name="microbatch_fusion", baseline=microbatch_fusion.baseline_per_microbatch,
         optimized=microbatch_fusion.optimized_fused_batch, inputs=microbatch_fusion.inputs,
         work=microbatch_fusion.work, goal="throughput",
         check_shapes=[(3, 5, 17, 23), (4, 1, 9, 13), (1, 7, 11, 5)], time_shapes=[(32, 8, 1024, 4096)],
         dtypes=["fp32"], min_speedup=2.0),
    Case(name="tensor_core_bf16", baseline=tensor_core_bf16.baseline_fp32_gemm,
         optimized=tensor_core_bf16.optimized_bf16_tensor_cores, inputs=tensor_core_bf16.inputs,
         work=tensor_core_bf16.work,
         check_shapes=[(17, 9, 13), (31, 257, 19), (5, 3, 7)], time_shapes=[(4096, 4096, 4096)],
         dtypes=["fp32"], min_speedup=1.5,
         tolerance=Tolerance(rel=2e-2, reason="bf16 rounds both fp32 inputs and the product to 8 significand bits "
                                              "(unit roundoff 2^-8); with fp32 accumulation the error is ~0.4% of "
                                              "the output's RMS")),
    Case(name="pinned_prefetch", baseline=pinned_prefetch.baseline_pageable_blocking,
         optimized=pinned_prefetch.optimized_pinned_prefetch, inputs=pinned_prefetch.inputs,
         reference=pinned_prefetch.reference, work=pinned_prefetch.work, needs_cuda=True,
         check_shapes=[(3, 2, 3, 7, 9), (1, 5, 1, 13, 11), (5, 1, 3, 17, 3)], time_shapes=[(4, 32, 3, 224, 224)],
         dtypes=["fp32"], host_dispatch="timed", min_speedup=1.3),
    Case(name="vectorized_reduction", baseline=vectorized_reduction.baseline_loop_of_losses,
         optimized=vectorized_reduction.optimized_one_reduction, inputs=vectorized_reduction.inputs,
         work=vectorized_reduction.work,
         check_shapes=[(3, 17), (1, 9), (13, 5)], time_shapes=[(128, 3072)], dtypes=["fp32"], min_speedup=5.0,
         host_dispatch="timed"),
    Case(name="elementwise_fusion", baseline=elementwise_fusion.baseline_unfused_gelu,
         optimized=elementwise_fusion.optimized_fused_gelu, inputs=elementwise_fusion.inputs,
         work=elementwise_fusion.work,
         check_shapes=[(3, 17), (1, 9), (13, 5)], time_shapes=[(8192, 3072)], dtypes=["fp32"], min_speedup=2.0),
]


@pytest.mark.perf_pair(*CASES)
def test_optimized_arm_beats_baseline(pair, aiperf):
    aiperf.run(pair)
