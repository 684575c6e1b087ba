"""MoE experts: the Hugging Face per-expert loop vs tokens sorted by expert and two grouped GEMMs over all experts.

- Baseline: transformers' ``MixtralSparseMoeBlock`` / ``Qwen2MoeSparseMoeBlock`` expert loop
  (``kernels.ch17.moe.hf_expert_loop``): one-hot the router's choices, ``nonzero`` the experts hit (a host sync),
  then per expert ``torch.where`` its (token, slot) pairs (a sync), gather its tokens, its SwiGLU MLP (two GEMMs, a
  SiLU and a multiply), scale by the router weight and ``index_add_`` into the output: ~12 launches and two syncs
  per expert, on one stream.
- Optimized: ``kernels.ch17.moe.grouped_moe``: a stable argsort of the (token, slot) pairs by expert and the
  experts' end rows by ``scatter_add_`` + ``cumsum`` on the device, one gather, ``torch._grouped_mm`` for gate/up and
  for down (one launch each over every expert; CUTLASS's grouped kernel on sm90), one SiLU x up, one scatter back
  and a weighted sum over each token's top-k rows. No host sync (capturable in a CUDA graph).
- Mechanism: the loop's cost is per expert (launches and syncs, and small GEMMs that fill a fraction of the SMs);
  the grouped GEMM puts every expert's tiles in one grid, so the cost follows the flops and the weight bytes.

Both arms route the same way (``route``: softmax, top-k, renormalize; the same eager kernels in both) and compute
the same function; ``moe_fused_routing`` is the pair for the router itself.

Shape ``(tokens, experts, top_k, hidden, ffn)``, bf16. Timing shapes: (4096, 128, 8, 2048, 768), one Qwen3-30B-A3B MoE
layer over a 4096-token prefill chunk (32,768 routed rows, 256 per expert on average), and (64, 64, 6, 2048, 1408),
one DeepSeek-V2-Lite MoE layer at decode (64 tokens, 384 routed rows, ~6 per expert). Router logits carry a
per-expert bias, so experts are unevenly loaded: the workload statistics are the busiest expert's token count over
the mean and the share of experts that got no token.

Napkin math on an H100 SXM (3.0 TB/s measured copy, bf16 GEMMs ~600-700 TFLOP/s dense; H200 4.25 TB/s):
- prefill work: 6 x 32768 x 2048 x 768 = 309 GFLOP; weights 128 x 3 x 2048 x 768 x 2 B = 1.21 GB. Floors ~0.45-0.5 ms
  for the flops, ~0.4 ms for the bytes.
- grouped at prefill: the gate/up grouped GEMM has 32768 / 128 x 1536 / 128 ~ 3,100 output tiles (~24 waves), the
  down GEMM ~4,100: both fill the GPU; at 60-70% of the dense ceiling ~0.7-0.8 ms, plus ~0.1 ms for the gather,
  SiLU, scatter and sum (~0.6 GB of activations): ~0.8-1.0 ms, ~310-390 TFLOP/s. Target: at least 60% of the
  measured bf16 matmul ceiling for the GEMMs.
- loop at prefill: 128 experts x ~12 eager launches at 6-15 us of host time (ch12 measured 15.5-21 us per launch for
  this style of code on the H100 VM) and two syncs; each expert's ~20 us of GPU work (ch11's one-stream capture:
  2.36 ms / 128) hides under its host time: ~9-23 ms.
- decode work: 6 x 384 x 2048 x 1408 = 6.6 GFLOP (nothing); weights 64 x 3 x 2048 x 1408 x 2 B = 1.11 GB, every
  expert hit: floors ~0.37 ms (H100), ~0.26 ms (H200). Grouped: ~0.45-0.6 ms (H100), ~0.33-0.45 ms (H200); loop: 64
  experts x ~80-200 us of host time: ~5-12 ms.
- predicted speedup: prefill 6-20x on H100 and H200 (host-bound loop against a compute-bound grouped arm); decode
  H100 8-20x, H200 10-25x. The plan's 3-4.5x assumed ~25 us per expert; the loop's launches cost more eagerly.
- floor: ``min_speedup`` 4.2 (70% of the low end, 6x).
- Where the win shrinks: a few large experts (Mixtral 8x7B: 8 experts, top-2, hidden 4096, ffn 14336) at thousands
  of tokens give each expert GEMMs that fill the GPU on their own, and 8 experts pay few launches: ~1.05-1.15x. This
  case does not time that shape.

Precision: both arms compute in bf16 with fp32 accumulation; the default bf16 bound holds. Risk: a torch whose
``_grouped_mm`` refuses these layouts on the GPU makes the optimized arm raise (``grouped_mm``), never fall back.

Measured once on an H200 (2026-12-05, a first smoke run: one process, --aiperf-budget=1.5; not a recording):
4096x128x8x2048x768: 39.7 ms -> 1.96 ms, 20.23x [15.72, 22.20]; 64x64x6x2048x1408: 12.7 ms -> 792 us, 16.01x [15.23,
18.89].
"""

from __future__ import annotations

from typing import Any

import torch

from kernels import itemsize, normal, seeded
from kernels.ch17.moe import expert_weights, grouped_moe, hf_expert_loop, imbalance, route, router_logits
from pytest_aiperf import Work


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[Any, ...]:
    """The layer's input tokens (tokens, hidden), its fp32 router logits (tokens, experts), the experts' weights,
    and ``top_k``."""
    tokens, experts, top_k, hidden, ffn = shape
    gen = seeded(seed)
    x = normal(gen, (tokens, hidden), dtype, device)
    logits = router_logits(gen, tokens, experts, device)
    gate_up, down = expert_weights(gen, experts, hidden, ffn, dtype, device)
    return x, logits, gate_up, down, top_k


def baseline_hf_expert_loop(x: torch.Tensor, logits: torch.Tensor, gate_up: torch.Tensor, down: torch.Tensor,
                            top_k: int) -> torch.Tensor:
    """Route, then each expert's MLP on its tokens, one expert at a time."""
    weights, ids = route(logits, top_k)
    return hf_expert_loop(x, weights, ids, gate_up, down)


def optimized_sorted_grouped_gemm(x: torch.Tensor, logits: torch.Tensor, gate_up: torch.Tensor, down: torch.Tensor,
                                  top_k: int) -> torch.Tensor:
    """Route, sort the routed rows by expert on the device, and run every expert's MLP in two grouped GEMMs."""
    weights, ids = route(logits, top_k)
    return grouped_moe(x, weights, ids, gate_up, down)


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Every expert's weights, the tokens and the logits read once, the output written once; three GEMMs of 2 flops
    per multiply-add over the ``tokens x top_k`` routed rows."""
    tokens, experts, top_k, hidden, ffn = shape
    elements = 3 * experts * hidden * ffn + 2 * tokens * hidden
    return Work(bytes=float(itemsize(dtype) * elements + 4 * tokens * experts),
                flops=float(6 * tokens * top_k * hidden * ffn))


def workload(x: torch.Tensor, logits: torch.Tensor, gate_up: torch.Tensor, down: torch.Tensor,
             top_k: int) -> dict[str, float]:
    """How unevenly the router loads the experts."""
    return imbalance(route(logits, top_k)[1], gate_up.shape[0])
