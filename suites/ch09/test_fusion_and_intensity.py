"""Chapter 9: arithmetic intensity and kernel fusion.

- l2norm_scale_fusion: row L2 norms then a scaling pass as two CUDA kernels vs one fused kernel (x read once).
- l2norm_scale_fusion_triton: the same pair in Triton on a bf16 hidden state.
- bn_residual_relu_fusion: a ResNet bottleneck's folded-BN scale + shift + residual + ReLU as 4 eager ops vs one Triton pass.
- gated_rmsnorm_fusion: Mamba-2's gated RMSNorm as eager SiLU, multiply and F.rms_norm vs one Triton kernel.
- register_micro_tiling: an fp32 matmul on 32 x 32 shared slabs, one output per thread vs a 4 x 4 register tile.
- structured_sparsity_ffn: a Llama-3-8B SwiGLU MLP on dense bf16 GEMMs vs 2:4 sparse tensor-core GEMMs.
- polynomial_roofline: a degree-k polynomial per element, k eager Horner steps vs one fused Triton pass, for k from
  2 to 512: the fused arm's rows move from memory-bound to compute-bound on the roofline.

Each kernel module's header has the napkin math and the predicted H100 speedup; ``min_speedup`` here is the
conservative floor, the claim that the technique wins at all on any recent GPU; a case that measured below it on
some GPU says why in ``known_loss``.
"""

from __future__ import annotations

import pytest

from kernels.ch09 import (bn_residual_relu_fusion, gated_rmsnorm_fusion, l2norm_scale_fusion,
                          l2norm_scale_fusion_triton, polynomial_roofline, register_micro_tiling,
                          structured_sparsity_ffn)
from pytest_aiperf import Case, Tolerance

# No 1-element outputs in bf16 Triton cases: the CPU interpreter (CI) truncates fp32 -> bf16 where the GPU rounds.
ROW_CHECK_SHAPES = [(1, 33), (33, 1), (37, 1000)]

CASES = [
    Case(name="l2norm_scale_fusion", baseline=l2norm_scale_fusion.baseline_two_kernels,
         optimized=l2norm_scale_fusion.optimized_fused_kernel, inputs=l2norm_scale_fusion.inputs,
         reference=l2norm_scale_fusion.reference, work=l2norm_scale_fusion.work, needs_cuda=True,
         check_shapes=[(3, 17), (1, 1), (37, 1000), (5, 4097)], time_shapes=[(16384, 4096)], dtypes=["fp32"],
         min_speedup=1.2),
    Case(name="l2norm_scale_fusion_triton", baseline=l2norm_scale_fusion_triton.baseline_two_triton_kernels,
         optimized=l2norm_scale_fusion_triton.optimized_fused_triton_kernel, inputs=l2norm_scale_fusion_triton.inputs,
         reference=l2norm_scale_fusion_triton.reference, work=l2norm_scale_fusion_triton.work,
         check_shapes=ROW_CHECK_SHAPES, time_shapes=[(16384, 4096)], dtypes=["bf16"], min_speedup=1.2),
    Case(name="bn_residual_relu_fusion", baseline=bn_residual_relu_fusion.baseline_eager_chain,
         optimized=bn_residual_relu_fusion.optimized_fused_triton, inputs=bn_residual_relu_fusion.inputs,
         reference=bn_residual_relu_fusion.reference, work=bn_residual_relu_fusion.work,
         check_shapes=[(1, 33), (33, 1), (70, 256)], time_shapes=[(200704, 256)], dtypes=["bf16"], min_speedup=2.0),
    Case(name="gated_rmsnorm_fusion", baseline=gated_rmsnorm_fusion.baseline_eager_gate_then_rms_norm,
         optimized=gated_rmsnorm_fusion.optimized_fused_triton, inputs=gated_rmsnorm_fusion.inputs,
         reference=gated_rmsnorm_fusion.reference, work=gated_rmsnorm_fusion.work,
         check_shapes=[(3, 17), (7, 3), (37, 1000)], time_shapes=[(16384, 5120)], dtypes=["bf16"], min_speedup=1.5),
    Case(name="register_micro_tiling", baseline=register_micro_tiling.baseline_shared_tiles_one_output,
         optimized=register_micro_tiling.optimized_register_micro_tiles, inputs=register_micro_tiling.inputs,
         reference=register_micro_tiling.reference, work=register_micro_tiling.work, needs_cuda=True,
         check_shapes=[(17, 9, 13), (65, 33, 129), (1, 70, 3)], time_shapes=[(4096, 4096, 4096)],
         dtypes=["fp32"], min_speedup=2.0),
    Case(name="structured_sparsity_ffn", baseline=structured_sparsity_ffn.baseline_dense_gemms,
         optimized=structured_sparsity_ffn.optimized_sparse_2_4_gemms, inputs=structured_sparsity_ffn.inputs,
         reference=structured_sparsity_ffn.reference, work=structured_sparsity_ffn.work, min_capability=(8, 0),
         needs_cuda=True, check_shapes=[(37, 64, 192), (1, 128, 64), (130, 256, 704)], time_shapes=[(4096, 4096, 14336)],
         dtypes=["bf16"], min_speedup=1.1,
         known_loss="0.67x on the H100 (0.54x and 0.79x in two processes) and 0.65-0.98x on an H200: on the H100 the "
                    "2:4 sparse kernels are only 1.13x faster than dense cuBLAS (511 vs 579 us for one projection), "
                    "and torch's semi-structured wrapper spends host time before each launch while the GPU waits (1287 "
                    "us per projection in all); the H200's spread is not profiled",
         tolerance=Tolerance(rel=2e-2, reason="both arms round the (tokens, ffn) activations and the output to bf16 "
                             "(2^-9 each) over fp32 accumulation, ~5e-3 against float64; the sparse kernels order "
                             "their partial sums differently from cuBLAS")),
    Case(name="polynomial_roofline", baseline=polynomial_roofline.baseline_eager_horner,
         optimized=polynomial_roofline.optimized_fused_horner, inputs=polynomial_roofline.inputs,
         work=polynomial_roofline.work, check_shapes=[(1, 1, 1), (3, 17, 5), (7, 300, 64)],
         time_shapes=[(4096, 4096, k) for k in (2, 8, 32, 128, 512)], dtypes=["fp32"], min_speedup=1.5),
]


@pytest.mark.perf_pair(*CASES)
def test_optimized_arm_beats_baseline(pair, aiperf):
    aiperf.run(pair)
