"""Chapter 10: tensor cores on Hopper.

- tensor_core_dot: one Triton GEMM kernel with fp32 operands on the CUDA cores (FFMA) vs bf16 operands on wgmma.
- tma_persistent_gemm: the tutorial Triton bf16 GEMM (pointer loads, 3 stages) vs TMA loads and a persistent grid.
- fp8_scaled_gemm: a bf16 linear layer vs fp8 weights and per-call per-tensor fp8 activations in ``_scaled_mm``.
- fused_epilogue: cuBLASLt GEMM + bias then a GELU kernel vs bias and GELU in the cuBLASLt epilogue.
- dsmem_cluster_reduction: split-row logsumexp partials combined by a second kernel vs in a cluster through DSMEM.

Each kernel module's header has the napkin math and the predicted H100 speedup; ``min_speedup`` here is the
conservative floor, the claim that the technique wins at all on any recent GPU.
"""

from __future__ import annotations

import pytest

from kernels.ch10 import dsmem_cluster_reduction, fp8_scaled_gemm, fused_epilogue, tensor_core_dot, tma_persistent_gemm
from pytest_aiperf import Case, Tolerance

CASES = [
    Case(name="tensor_core_dot", baseline=tensor_core_dot.baseline_fp32_fma_dot,
         optimized=tensor_core_dot.optimized_bf16_wgmma_dot, inputs=tensor_core_dot.inputs,
         reference=tensor_core_dot.reference, work=tensor_core_dot.work,
         check_shapes=[(33, 70, 45), (130, 72, 140), (1, 1, 1)], time_shapes=[(4096, 4096, 4096)],
         dtypes=["fp32"], min_speedup=4.0,
         tolerance=Tolerance(rel=1e-2, reason="bf16 operands (2^-8 unit roundoff): ~0.3% relative error with fp32 "
                                              "accumulation")),
    Case(name="tma_persistent_gemm", baseline=tma_persistent_gemm.baseline_tutorial_gemm,
         optimized=tma_persistent_gemm.optimized_tma_persistent_gemm, inputs=tma_persistent_gemm.inputs,
         reference=tma_persistent_gemm.reference, work=tma_persistent_gemm.work,
         check_shapes=[(33, 72, 200), (130, 72, 264), (1, 24, 8)],
         time_shapes=[(4096, 4096, 4096), (8192, 8192, 8192)], dtypes=["bf16"], min_speedup=1.1),
    Case(name="fp8_scaled_gemm", baseline=fp8_scaled_gemm.baseline_bf16_linear,
         optimized=fp8_scaled_gemm.optimized_fp8_scaled_mm, inputs=fp8_scaled_gemm.inputs,
         reference=fp8_scaled_gemm.reference, work=fp8_scaled_gemm.work, min_capability=(8, 9),
         needs_cuda=True, check_shapes=[(33, 64, 48), (1, 16, 16), (257, 512, 208)], time_shapes=[(8192, 4096, 14336)],
         dtypes=["bf16"], min_speedup=1.2,
         tolerance=Tolerance(rel=8e-2, reason="e4m3 operands (3 mantissa bits, 2^-4 unit roundoff): ~3.7% relative "
                                              "error, measured in float64 emulation")),
    Case(name="fused_epilogue", baseline=fused_epilogue.baseline_linear_then_gelu,
         optimized=fused_epilogue.optimized_gelu_in_epilogue, inputs=fused_epilogue.inputs,
         work=fused_epilogue.work, check_shapes=[(33, 70, 45), (1, 64, 130), (130, 200, 16)],
         time_shapes=[(8192, 1600, 6400), (8192, 4096, 16384)], dtypes=["bf16"], min_speedup=1.05),
    Case(name="dsmem_cluster_reduction", baseline=dsmem_cluster_reduction.baseline_two_pass_partials,
         optimized=dsmem_cluster_reduction.optimized_cluster_dsmem_reduction, inputs=dsmem_cluster_reduction.inputs,
         reference=dsmem_cluster_reduction.reference, work=dsmem_cluster_reduction.work, min_capability=(9, 0),
         needs_cuda=True, check_shapes=[(3, 17), (5, 1), (4, 1000), (2, 128_256)], time_shapes=[(64, 128_256)],
         dtypes=["fp32"], min_speedup=1.05),
]


@pytest.mark.perf_pair(*CASES)
def test_optimized_arm_beats_baseline(pair, aiperf):
    aiperf.run(pair)
