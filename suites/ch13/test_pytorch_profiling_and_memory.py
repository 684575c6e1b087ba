"""Chapter 13: PyTorch profiling and memory tuning, the lessons a profile or a memory snapshot of a training step
finds.

- bf16_autocast_training: an fp32 step with TF32 GEMMs vs the same step under bf16 autocast (fp32 master weights).
- sync_free_training_loop: ten steps reading loss and gradient norm with ``.item()`` each step vs metrics and the
  skip of a non-finite step kept on the device.
- fused_adamw: AdamW's default foreach step (one HBM pass per op) vs ``fused=True`` (one pass).
- activation_checkpointing: a decoder stack's backward keeping every activation vs recomputing each layer's.
- expandable_segments_allocator: gradient accumulation over changing lengths, default segments vs expandable ones
  (reserved memory).
- compiled_layers_and_loss: the eager autocast step vs its decoder layers and loss through ``torch.compile``.

Each kernel module's header has the napkin math and the predicted H100 speedup (or memory ratio); ``min_speedup``
here is the conservative floor, about 70% of the low end of the prediction and never below 1.05.
"""

from __future__ import annotations

import pytest

from kernels.ch13 import (activation_checkpointing, bf16_autocast_training, compiled_layers_and_loss,
                          expandable_segments_allocator, fused_adamw, sync_free_training_loop)
from pytest_aiperf import Case, Tolerance

# Dynamo reads ``.grad`` of the non-leaf activations a compiled layer receives and hides the warning this raises
# through ``warnings.showwarning``, which the ini's ``filterwarnings = error`` acts before: torch's own warning.
pytestmark = pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf Tensor:UserWarning")

CASES = [
    Case(name="bf16_autocast_training", baseline=bf16_autocast_training.baseline_tf32_step,
         optimized=bf16_autocast_training.optimized_bf16_autocast_step, inputs=bf16_autocast_training.inputs,
         reference=bf16_autocast_training.reference, work=bf16_autocast_training.work,
         check_shapes=[(64, 1, 2, 17), (64, 2, 1, 33), (64, 2, 3, 64)], time_shapes=[(2048, 4, 2, 2048)],
         dtypes=["tf32"], min_speedup=1.05,
         tolerance=Tolerance(rel=6e-2, reason="bf16 autocast GEMM operands (2^-8 unit roundoff): the gradients of the "
                                              "q/k projections and norm weights, the worst, measured 1.0-2.6e-2 at "
                                              "1-4 layers (3.4e-2 at 8) against float64 on the CPU")),
    Case(name="sync_free_training_loop", baseline=sync_free_training_loop.baseline_host_synced_loop,
         optimized=sync_free_training_loop.optimized_device_side_loop, inputs=sync_free_training_loop.inputs,
         reference=sync_free_training_loop.reference, host_dispatch="timed",
         check_shapes=[(64, 1, 2, 8, 3), (64, 2, 1, 17, 3)], time_shapes=[(896, 24, 4, 512, 10)],
         dtypes=["bf16"], min_speedup=1.05, budget_s=30,
         tolerance=Tolerance(rel=5e-2, reason="ten bf16 AdamW steps of Qwen2.5-0.5B compound rounding: the baseline "
                                              "measured 3.01e-2 against float64 at the timing shape on an H100 "
                                              "(2026-12-05; output #36, a weight after the tenth step), past bf16's "
                                              "3e-2; both arms run the same arithmetic")),
    Case(name="fused_adamw", baseline=fused_adamw.baseline_foreach_adamw, optimized=fused_adamw.optimized_fused_adamw,
         inputs=fused_adamw.inputs, work=fused_adamw.work, check_shapes=[(64, 1), (64, 2), (64, 3)],
         time_shapes=[(896, 24)], dtypes=["fp32"], min_speedup=1.7),
    Case(name="activation_checkpointing", baseline=activation_checkpointing.baseline_keep_activations,
         optimized=activation_checkpointing.optimized_checkpointed_layers, inputs=activation_checkpointing.inputs,
         reference=activation_checkpointing.reference, work=activation_checkpointing.work, goal="memory",
         max_slowdown=1.45, check_shapes=[(64, 1, 2, 17), (64, 2, 1, 33), (64, 3, 2, 64)],
         time_shapes=[(2048, 8, 4, 2048)], dtypes=["bf16"], min_speedup=2.3),
    Case(name="expandable_segments_allocator", baseline=expandable_segments_allocator.baseline_default_segments,
         optimized=expandable_segments_allocator.optimized_expandable_segments,
         inputs=expandable_segments_allocator.inputs, reference=expandable_segments_allocator.reference,
         workload=expandable_segments_allocator.workload, goal="memory", memory="reserved", max_slowdown=1.1,
         check_shapes=[(64, 1, 2, 16, 3), (64, 1, 1, 40, 4)], time_shapes=[(2048, 1, 2, 2048, 8)],
         dtypes=["bf16"], min_speedup=1.05, budget_s=20),
    Case(name="compiled_layers_and_loss", baseline=compiled_layers_and_loss.baseline_eager_step,
         optimized=compiled_layers_and_loss.optimized_compiled_layers_and_loss, inputs=compiled_layers_and_loss.inputs,
         reference=compiled_layers_and_loss.reference, work=compiled_layers_and_loss.work,
         check_shapes=[(64, 1, 2, 17), (64, 2, 1, 33), (64, 2, 3, 64)], time_shapes=[(2048, 4, 2, 2048)],
         dtypes=["bf16"], min_speedup=1.05,
         tolerance=Tolerance(rel=6e-2, reason="Inductor rounds the fused pointwise chains once, in fp32, where eager "
                                              "bf16 autocast rounds between ops: both within the step's bf16-autocast "
                                              "error, measured 2.0-2.6e-2 at 2-4 layers in float64 emulation")),
]


@pytest.mark.perf_pair(*CASES)
def test_optimized_arm_beats_baseline(pair, aiperf):
    aiperf.run(pair)
