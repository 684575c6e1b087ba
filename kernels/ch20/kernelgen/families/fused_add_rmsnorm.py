"""Fused residual add + RMSNorm (bf16): the family the issue's generated case targets.

Every decoder layer of a Llama-style model runs ``residual = x + residual; h = rmsnorm(residual) * weight`` twice.

- Baseline (the case's): the residual add, then Hugging Face's ``LlamaRMSNorm`` in eager PyTorch (upcast to fp32,
  ``pow(2).mean``, ``* rsqrt``, downcast, ``weight *``): 7 kernels, each a full pass over the row matrix.
- Candidates: ``templates/fused_add_rmsnorm.cu.in``, one kernel that reads x and residual once, writes
  residual_out and y once, and reduces the row's sum of squares between the two.

Space (720 points): THREADS lanes per row {64..1024}, VEC bf16 per access {1, 2, 4, 8} (8 = 16 bytes),
ROWS_PER_CTA {1, 2, 4}, REDUCE {warp_shuffle, smem_tree}, HOLD {registers, reread}, LOAD hint for the read-once
inputs {plain, evict_first (__ldcs), read_only (__ldg)}. Static constraints leave ~200 at hidden 4096; the search
samples from them and halves (``search``).

Napkin math at the timing shape (16384, 4096), Llama-3-8B's hidden size over 16k tokens: one bf16 matrix is 134 MB.
- fused: 2 reads + 2 writes = 537 MB; at ~4.0 TB/s (an H200's copy rate, about 83% of its 4.8 TB/s peak) ~134 us.
  Target: >= 85% of the copy ceiling measured in the same run (``measure.measure_ceilings``).
- eager: add 3 matrix-passes (2 reads, 1 write), to(fp32) 3 (1 read, a 2x-wide write), pow 4, mean 2, * rsqrt 4,
  to(bf16) 3, weight * 2: 21 passes = 2.8 GB, ~700 us at the copy rate.
- predicted speedup: 21 / 4 = 5.2x at equal bandwidth; 3-5x where the eager kernels run below the copy rate less
  often than assumed here (not yet measured: no GPU run of the generator so far).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

from kernels import itemsize, normal, seeded
from kernels.ch20.kernelgen.family import Family, Resources, row_reasons
from kernels.ch20.kernelgen.space import Param, Space
from pytest_aiperf import Work

EPS = 1e-5  # Llama-3's rms_norm_eps

SPACE = Space((
    Param("THREADS", (64, 128, 256, 512, 1024), "lanes per row"),
    Param("VEC", (1, 2, 4, 8), "bf16 per vector access (8: 16-byte loads and stores)"),
    Param("ROWS_PER_CTA", (1, 2, 4), "rows per CTA, one lane group each"),
    Param("REDUCE", ("warp_shuffle", "smem_tree"), "the row's sum of squares: shuffles then a warp per slot, or a "
                                                    "shared-memory tree"),
    Param("HOLD", ("registers", "reread"), "keep the row's sums in registers, or re-read residual_out from L2"),
    Param("LOAD", ("plain", "evict_first", "read_only"), "cache hint on x and residual, each read once"),
))


def held(params: Mapping[str, Any], target: Mapping[str, int]) -> int:
    """Vectors per lane that hold a row of the target width in registers (0 where HOLD is reread)."""
    if params["HOLD"] != "registers":
        return 0
    per_sweep = params["THREADS"] * params["VEC"]
    return -(-target["hidden"] // per_sweep)


def derive(params: Mapping[str, Any], target: Mapping[str, int]) -> dict[str, Any]:
    return {**params, "HELD": held(params, target)}


def constraints(params: Mapping[str, Any], target: Mapping[str, int]) -> list[str]:
    return row_reasons("hidden", target["hidden"], params["THREADS"], params["VEC"],
                       held(params, target) * params["VEC"])


def resources(params: Mapping[str, Any], target: Mapping[str, int]) -> Resources:
    threads = params["THREADS"] * params["ROWS_PER_CTA"]
    slots = params["THREADS"] if params["REDUCE"] == "smem_tree" else params["THREADS"] // 32
    return Resources(threads=threads, smem_bytes=4 * slots * params["ROWS_PER_CTA"],
                     registers=32 + held(params, target) * params["VEC"])


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[torch.Tensor, ...]:
    """A layer's output x and the residual stream (rows, hidden), unit-normal; the norm weight ~N(1, 0.1^2)."""
    rows, dim = shape
    gen = seeded(seed)
    x = normal(gen, (rows, dim), dtype, device)
    residual = normal(gen, (rows, dim), dtype, device)
    weight = (1.0 + normal(gen, (dim,), "fp32", device, std=0.1)).to(x.dtype)
    return x, residual, weight


def baseline_eager_add_then_hf_rmsnorm(x: torch.Tensor, residual: torch.Tensor,
                                       weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The residual add, then LlamaRMSNorm's forward as Hugging Face writes it: 7 eager kernels."""
    hidden = x + residual
    h = hidden.to(torch.float32)
    variance = h.pow(2).mean(-1, keepdim=True)
    h = h * torch.rsqrt(variance + EPS)
    return weight * h.to(hidden.dtype), hidden


def reference(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both outputs in float64 (the inputs arrive upcast)."""
    hidden = x + residual
    return hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + EPS) * weight, hidden


def arm(call: Callable[..., int]) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """The case arm of a launcher ``call(y, residual_out, x, residual, weight, rows, dim, eps)``."""

    def generated_fused_add_rmsnorm(x: torch.Tensor, residual: torch.Tensor,
                                    weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows, dim = x.shape
        y = torch.empty_like(x)
        residual_out = torch.empty_like(x)
        call(y, residual_out, x, residual, weight, rows, dim, EPS)
        return y, residual_out

    return generated_fused_add_rmsnorm


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """x and residual read once, residual_out and y written once (the weight once); ~5 flops per element."""
    rows, dim = shape
    return Work(bytes=float(itemsize(dtype) * (4 * rows * dim + dim)), flops=float(5 * rows * dim))


def check_shapes(target: Mapping[str, int]) -> list[tuple[int, ...]]:
    """Tails around the target width (odd widths take the 1-element path), twice it (wider than the held
    registers), one-element rows, and row counts that leave ROWS_PER_CTA groups idle."""
    hidden = target["hidden"]
    return [(1, 1), (3, 17), (7, hidden - 1), (2, hidden), (3, hidden + 1), (5, 2 * hidden), (37, 1000)]


DEFAULTS = (
    {"THREADS": 256, "VEC": 8, "ROWS_PER_CTA": 1, "REDUCE": "warp_shuffle", "HOLD": "registers", "LOAD": "evict_first"},
    {"THREADS": 512, "VEC": 8, "ROWS_PER_CTA": 1, "REDUCE": "warp_shuffle", "HOLD": "registers", "LOAD": "plain"},
    {"THREADS": 128, "VEC": 4, "ROWS_PER_CTA": 2, "REDUCE": "smem_tree", "HOLD": "reread", "LOAD": "read_only"},
)

FAMILY = Family(name="fused_add_rmsnorm", space=SPACE, target={"hidden": 4096}, derive=derive,
                constraints=constraints, resources=resources, inputs=inputs,
                baseline=baseline_eager_add_then_hf_rmsnorm, reference=reference, work=work, arm=arm,
                check_shapes=check_shapes, time_shape=lambda target: (16384, target["hidden"]), defaults=DEFAULTS)
