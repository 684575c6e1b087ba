"""Generated fused residual add + RMSNorm: the kernel generator's promoted kernel as an ordinary case's optimized arm.

WAITING FOR A PROMOTED KERNEL: ``generated/fused_add_rmsnorm_hidden4096.cu`` exists only after a GPU search
promotes a candidate (``python -m kernels.ch20.kernelgen search --family fused_add_rmsnorm`` on the H200) and the
file is reviewed and committed with its registry record; until then the suite collects no case for it and says so.

- Baseline: the residual add, then Hugging Face's LlamaRMSNorm in eager PyTorch (upcast, ``pow(2).mean``,
  ``* rsqrt``, downcast, ``weight *``): 7 kernels over the row matrix.
- Optimized: the promoted candidate of ``kernelgen/templates/fused_add_rmsnorm.cu.in``, loaded through
  ``CudaLibrary`` by the family's launcher name, so a later promotion replaces the file and nothing here changes.
  One kernel: x and residual read once, residual_out and y written once.

Shape ``(tokens, hidden)``, bf16; timing shape (16384, 4096), Llama-3-8B's hidden size over 16k tokens, 134 MB per
matrix. Napkin math (``kernelgen/families/fused_add_rmsnorm.py``): 4 matrix-passes fused vs 21 eager (2.8 GB), so
~5x at equal bandwidth and 3-5x predicted; the fused kernel should move >= 85% of the copy ceiling measured in the
run (the issue's target). Not yet measured.
"""

from __future__ import annotations

from pathlib import Path

import torch

from kernels.ch20.kernelgen.families.fused_add_rmsnorm import FAMILY
from pytest_aiperf.build import CudaLibrary

SOURCE_NAME = "generated/fused_add_rmsnorm_hidden4096.cu"
SOURCE = Path(__file__).resolve().parent / SOURCE_NAME
_lib = CudaLibrary(__file__, SOURCE_NAME)

inputs = FAMILY.inputs
baseline_eager_add_then_hf_rmsnorm = FAMILY.baseline
reference = FAMILY.reference
work = FAMILY.work
CHECK_SHAPES = FAMILY.check_shapes(FAMILY.target)
TIME_SHAPES = [FAMILY.time_shape(FAMILY.target)]


def optimized_generated_kernel(x: torch.Tensor, residual: torch.Tensor,
                               weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The promoted kernel through the family's launcher ``kernelgen_fused_add_rmsnorm``."""
    return FAMILY.arm(_lib.kernelgen_fused_add_rmsnorm)(x, residual, weight)
