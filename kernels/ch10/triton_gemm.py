"""The Triton GEMM shared by ``tensor_core_dot`` and ``tma_persistent_gemm``: ``c = a @ b.T`` with pointer loads.

``a`` is (m, k) and ``b`` is (n, k), both row-major (``b`` in the ``nn.Linear`` weight layout), ``c`` is (m, n);
accumulation is always fp32. One program computes one ``BLOCK_M x BLOCK_N`` output tile, walking k in
``BLOCK_K`` steps; programs take their tiles in the grouped order of the Triton matmul tutorial (``GROUP_M`` row
tiles sweep the column tiles together, so the tiles of ``b`` they share are still in L2). ``num_stages`` is the
software pipeline depth the compiler builds around the k loop (1: none, each step's loads land before its dot).

The CPU interpreter (``TRITON_INTERPRET=1``, triton 3.9) multiplies bf16 tiles as their raw uint16 bits, so on
CPU tensors the kernels widen bf16 tiles to fp32 before ``tl.dot`` (``WIDEN``): exact products with fp32
accumulation, which is what a bf16 tensor-core MMA computes. On the GPU ``WIDEN`` is False and compiles away.
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

GROUP_M = 8


@triton.jit
def tile_coords(tile, num_m, num_n, GROUP_M: tl.constexpr):
    """Tile index -> (row tile, column tile) in the grouped order: ``GROUP_M`` row tiles per column sweep."""
    per_group = GROUP_M * num_n
    first_m = (tile // per_group) * GROUP_M
    group_m = min(num_m - first_m, GROUP_M)
    return first_m + (tile % group_m), (tile % per_group) // group_m


@triton.jit
def _gemm_tile_per_program(a_ptr, b_ptr, c_ptr, M, N, K, stride_am, stride_bn, stride_cm,
                           BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                           GROUP_M: tl.constexpr, PRECISION: tl.constexpr, WIDEN: tl.constexpr):
    pid_m, pid_n = tile_coords(tl.program_id(0), tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N), GROUP_M)
    # Rows past the edge wrap around to valid rows (the tutorial's trick: no row mask in the k loop); the
    # store below drops them.
    rows = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)) % M
    cols = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)) % N
    ks = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + rows[:, None].to(tl.int64) * stride_am + ks[None, :]
    b_ptrs = b_ptr + cols[:, None].to(tl.int64) * stride_bn + ks[None, :]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        in_k = ks[None, :] < K - k0
        a = tl.load(a_ptrs, mask=in_k, other=0.0)
        b = tl.load(b_ptrs, mask=in_k, other=0.0)
        if WIDEN:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, tl.trans(b), acc, input_precision=PRECISION)
        a_ptrs += BLOCK_K
        b_ptrs += BLOCK_K
    out_rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    out_cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    c_ptrs = c_ptr + out_rows[:, None].to(tl.int64) * stride_cm + out_cols[None, :]
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=(out_rows[:, None] < M) & (out_cols[None, :] < N))


def widen_for_interpreter(t: torch.Tensor) -> bool:
    """Whether bf16 tiles must be widened before ``tl.dot``: only on CPU tensors (the interpreter)."""
    return t.device.type != "cuda" and t.dtype == torch.bfloat16


def gemm_tile_per_program(a: torch.Tensor, b: torch.Tensor, out_dtype: torch.dtype, *, block: tuple[int, int, int],
                          num_warps: int, num_stages: int, precision: Any = None) -> torch.Tensor:
    """``a @ b.T`` (fp32 accumulation) with one program per output tile; ``precision`` is ``tl.dot``'s
    ``input_precision`` (``"ieee"``: fp32 operands on the FMA units)."""
    (m, k), (n, k_b) = a.shape, b.shape
    if k != k_b or a.dtype != b.dtype or a.stride(1) != 1 or b.stride(1) != 1:
        raise ValueError(f"a (m, k) and b (n, k) must share k and dtype and be row-major; got {tuple(a.shape)} "
                         f"{a.dtype}, {tuple(b.shape)} {b.dtype}")
    c = torch.empty((m, n), dtype=out_dtype, device=a.device)
    block_m, block_n, block_k = block
    grid = (triton.cdiv(m, block_m) * triton.cdiv(n, block_n),)
    _gemm_tile_per_program[grid](a, b, c, m, n, k, a.stride(0), b.stride(0), c.stride(0),
                                 BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, GROUP_M=GROUP_M,
                                 PRECISION=precision, WIDEN=widen_for_interpreter(a),
                                 num_warps=num_warps, num_stages=num_stages)
    return c
