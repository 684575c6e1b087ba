"""Chapter 15: serving core. The serving-engine pairs (all but speculative and guided decoding) run the project's
serving engine (``kernels.serving``): both arms replay the same seeded trace through the same engine and differ only
in the technique. Speculative and guided decoding run the shared model's static-cache decode loop (``kernels.llm``),
both arms the same model and cache.

- continuous_batching: static batches run to their longest request vs iteration-level scheduling (e2e p99).
- paged_kv_cache: a contiguous max-length KV reservation per sequence vs paged blocks, at one KV budget (tokens/s).
- prefix_cache_reuse: every request prefills its whole prompt vs block-hash prefix reuse (TTFT p50).
- chunked_prefill: whole-prompt prefill steps vs stall-free chunked prefill with a token budget (TPOT p99).
- speculative_decoding: target-only greedy decoding vs a self-speculative draft verified k + 1 tokens at a time (TPOT
  p50, batch 1).
- guided_decoding_bitmask: a grammar's token mask built on the host each step vs packed bitmasks and the grammar's
  state on the GPU (tokens/s).
- prefill_decode_disaggregation (2 GPUs): two colocated chunked-prefill replicas vs a prefill GPU sending each
  prompt's KV to a decode GPU (TPOT p99 of the ranks' merged timelines; its GPU runs belong to the multi-GPU runs).

Every request's tokens, in both arms, must be the float64 single-request greedy choice at every position, up to the
first near-tie (``kernels/ch15/serving_arms.py``); the guided pair's, the greedy choice among the tokens its grammar
allows. The serving-engine pairs' timing shapes are four Llama-3.2-1B layers with a 32000-token vocabulary (why:
``serving_arms``; the two-GPU pair's Llama-3-8B layers, why in its header), speculative decoding's all sixteen with a
two-layer draft, guided decoding's two; check shapes the TINY model on the CPU with gather + SDPA decode attention. Each kernel module's header has the napkin math and the
predicted speedup; ``min_speedup`` is the conservative floor, about 70% of the low end of the prediction and never
below 1.05.

A replay takes ~0.6-4.4 s (predicted), so a sample is one replay and ``budget_s`` is sized to a round of both arms
(2.5-6.4 s): the warm-up takes three rounds (at least three calls, and a quarter of the budget), then sampling runs
to the budget: ~7-9 sampled rounds per case, not the 20 a microsecond case gets (the core checks the gate's decision
from round 20 on, and stops at the budget after three). With the checks at the timing shape (two replays per arm and
the float64 reference), the first calls and the workload replays, a serving case takes ~0.75-1.5 minutes of GPU
time; speculative decoding (~3.1 s and ~1.7 s a call) ~1.5 minutes, guided decoding (~0.25 s a call) ~0.5 minute;
the single-GPU chapter ~7 minutes. The two-GPU pair (~3.5 s a call, at least ten rounds) takes ~3 minutes.
"""

from __future__ import annotations

import pytest

from kernels.ch15 import (chunked_prefill, continuous_batching, guided_decoding_bitmask, paged_kv_cache,
                          prefill_decode_disaggregation, prefix_cache_reuse, speculative_decoding)
from kernels.ch15.serving_arms import token_reference
from pytest_aiperf import Case

SERVING = dict(token_reference=token_reference, dtypes=["bf16"], cache="warm",
               host_dispatch="timed")

CASES = [
    Case(name="continuous_batching", baseline=continuous_batching.baseline_static_batching,
         optimized=continuous_batching.optimized_continuous_batching, inputs=continuous_batching.inputs,
         workload=continuous_batching.workload, goal="latency", metric="e2e_p99",
         check_shapes=[(64, 2, 8, 3), (64, 2, 12, 4)], time_shapes=[(2048, 4, 256, 32)], min_speedup=1.05,
         budget_s=60, **SERVING),
    Case(name="paged_kv_cache", baseline=paged_kv_cache.baseline_contiguous_reservation,
         optimized=paged_kv_cache.optimized_paged_blocks, inputs=paged_kv_cache.inputs, work=paged_kv_cache.work,
         workload=paged_kv_cache.workload, goal="throughput",
         check_shapes=[(64, 2, 8, 96, 32), (64, 2, 12, 64, 24)], time_shapes=[(2048, 4, 256, 32768, 2048)],
         min_speedup=2.1, budget_s=45, **SERVING),
    Case(name="prefix_cache_reuse", baseline=prefix_cache_reuse.baseline_full_prefill,
         optimized=prefix_cache_reuse.optimized_block_hash_reuse, inputs=prefix_cache_reuse.inputs,
         workload=prefix_cache_reuse.workload, goal="latency", metric="ttft_p50",
         check_shapes=[(64, 2, 2, 3, 16, 2), (64, 2, 3, 4, 12, 3)], time_shapes=[(2048, 4, 8, 32, 4096, 32)],
         min_speedup=1.25, budget_s=30, **SERVING),
    Case(name="chunked_prefill", baseline=chunked_prefill.baseline_whole_prompt_prefill,
         optimized=chunked_prefill.optimized_chunked_prefill, inputs=chunked_prefill.inputs,
         workload=chunked_prefill.workload, goal="latency", metric="tpot_p99", guards=chunked_prefill.GUARDS,
         check_shapes=[(64, 2, 8, 2000, 4, 8), (64, 2, 10, 1000, 3, 5)],
         time_shapes=[(2048, 4, 256, 100, 64, 2048)], min_speedup=1.05, budget_s=60, **SERVING),
    Case(name="speculative_decoding", baseline=speculative_decoding.baseline_target_greedy,
         optimized=speculative_decoding.optimized_draft_then_verify, inputs=speculative_decoding.inputs,
         workload=speculative_decoding.workload, goal="latency", metric="tpot_p50",
         token_reference=speculative_decoding.token_reference, check_shapes=[(64, 4, 1, 3, 2, 8, 24),
                                                                             (64, 4, 1, 2, 3, 5, 16)],
         time_shapes=[(2048, 16, 2, 4, 2, 512, 128)], min_speedup=1.05, budget_s=45, dtypes=["bf16"], cache="warm",
         host_dispatch="timed"),
    Case(name="guided_decoding_bitmask", baseline=guided_decoding_bitmask.baseline_host_mask_per_step,
         optimized=guided_decoding_bitmask.optimized_device_bitmask, inputs=guided_decoding_bitmask.inputs,
         work=guided_decoding_bitmask.work, goal="throughput", token_reference=guided_decoding_bitmask.token_reference,
         check_shapes=[(64, 2, 512, 4, 6, 24), (64, 2, 600, 3, 5, 20)], time_shapes=[(2048, 2, 32000, 64, 32, 128)],
         min_speedup=1.05, budget_s=20, dtypes=["bf16"], cache="warm", host_dispatch="timed"),
    Case(name="prefill_decode_disaggregation",
         baseline=prefill_decode_disaggregation.baseline_colocated_replicas,
         optimized=prefill_decode_disaggregation.optimized_disaggregated_prefill_decode,
         inputs=prefill_decode_disaggregation.inputs, goal="latency", metric="tpot_p99",
         guards=prefill_decode_disaggregation.GUARDS, world_sizes=(2,),
         check_shapes=[(64, 2, 6, 2000, 4, 16), (64, 2, 7, 500, 2, 8)], time_shapes=[(4096, 4, 256, 80, 64, 2048)],
         min_speedup=1.05, budget_s=150, **SERVING),
]


@pytest.mark.perf_pair(*CASES)
def test_optimized_arm_beats_baseline(pair, aiperf):
    aiperf.run(pair)
