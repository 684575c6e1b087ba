"""Chapter 16: production inference, the fixes a profile of a Hugging Face-style server shows first.

- varlen_unpadded_prefill: prompts padded to the longest with a causal + padding mask vs packed real tokens with
  per-prompt causal attention.
- last_token_logits_prefill: the LM head over every prompt position vs over the last position only (speed); its
  memory twin last_token_logits_prefill_memory gates the peak.
- static_kv_cache_compile: transformers' generate with its dynamic cache, eager, vs the static cache with the decode
  step compiled (reduce-overhead); skipped where transformers (the test extra) is not installed.
- int8_weight_only_decode: a graphed bf16 decode step vs the same step with int8 per-channel weights in every linear
  layer, dequantized in registers by a Triton GEMV.
- async_step_scheduling: a graphed decode loop whose host reads each step's tokens before launching the next vs
  launching step n+1 first and processing step n's tokens while the GPU runs it.
- piecewise_cuda_graphs: the serving engine's mixed prefill + decode steps eager vs replayed as one graph per stretch
  between attention calls, per padded token count, attention eager in between.

The token-producing cases (static_kv_cache_compile, async_step_scheduling, piecewise_cuda_graphs) check every
request's tokens, in both arms, against the float64 teacher-forced reference with the near-tie rule
(``pytest_aiperf.tokens``); the others check logits. CUDA graphs (int8_weight_only_decode, async_step_scheduling,
piecewise_cuda_graphs) are captured on a GPU; off CUDA the same pieces run eagerly (``kernels/ch16/graphed.py``), so
the CPU checks the function the graphs replay.

Each kernel module's header has the napkin math and the predicted H100 and H200 speedups; ``min_speedup`` here is
the floor, about 70% of the low end of the prediction and never below 1.05.
"""

from __future__ import annotations

import pytest

from kernels.ch15.serving_arms import token_reference
from kernels.ch16 import (async_step_scheduling, int8_weight_only_decode, last_token_logits_prefill,
                          last_token_logits_prefill_memory, piecewise_cuda_graphs, static_kv_cache_compile,
                          varlen_unpadded_prefill)
from pytest_aiperf import Case

LAST_TOKEN_SHAPES = dict(check_shapes=[(64, 2, 2, 9), (64, 1, 3, 1)],
                         time_shapes=[(2048, 16, 16, 2048), (896, 24, 16, 2048)], dtypes=["bf16"])

CASES = [
    Case(name="varlen_unpadded_prefill", baseline=varlen_unpadded_prefill.baseline_padded_batch,
         optimized=varlen_unpadded_prefill.optimized_packed_varlen, inputs=varlen_unpadded_prefill.inputs,
         reference=varlen_unpadded_prefill.reference, work=varlen_unpadded_prefill.work,
         workload=varlen_unpadded_prefill.workload,
         check_shapes=[(64, 2, 3, 5, 17), (64, 2, 5, 8, 33), (64, 1, 1, 4, 9)],
         time_shapes=[(2048, 16, 32, 512, 2048)], dtypes=["bf16"], min_speedup=1.75),
    Case(name="last_token_logits_prefill", baseline=last_token_logits_prefill.baseline_every_position_head,
         optimized=last_token_logits_prefill.optimized_last_position_head, inputs=last_token_logits_prefill.inputs,
         reference=last_token_logits_prefill.reference, work=last_token_logits_prefill.work, min_speedup=1.05,
         **LAST_TOKEN_SHAPES),
    Case(name="last_token_logits_prefill_memory",
         baseline=last_token_logits_prefill_memory.baseline_every_position_head,
         optimized=last_token_logits_prefill_memory.optimized_last_position_head,
         inputs=last_token_logits_prefill_memory.inputs, reference=last_token_logits_prefill_memory.reference,
         work=last_token_logits_prefill_memory.work, goal="memory", min_speedup=2.4, **LAST_TOKEN_SHAPES),
    Case(name="static_kv_cache_compile", baseline=static_kv_cache_compile.baseline_dynamic_cache_eager,
         optimized=static_kv_cache_compile.optimized_static_cache_compiled, inputs=static_kv_cache_compile.inputs,
         token_reference=static_kv_cache_compile.token_reference, work=static_kv_cache_compile.work,
         host_dispatch="timed", cache="warm", budget_s=40,
         check_shapes=[(64, 2, 3, 9, 8), (64, 1, 1, 5, 6)],
         time_shapes=[(2048, 16, 1, 128, 128), (2048, 16, 8, 128, 128)],
         dtypes=["bf16"], min_speedup=2.8),
    Case(name="int8_weight_only_decode", baseline=int8_weight_only_decode.baseline_bf16_weights,
         optimized=int8_weight_only_decode.optimized_int8_triton_gemv, inputs=int8_weight_only_decode.inputs,
         work=int8_weight_only_decode.work, tolerance=int8_weight_only_decode.TOLERANCE,
         check_shapes=[(64, 2, 1, 7), (64, 2, 3, 33)], time_shapes=[(2048, 16, 1, 1024), (2048, 16, 8, 1024)],
         dtypes=["bf16"], min_speedup=1.05),
    Case(name="async_step_scheduling", baseline=async_step_scheduling.baseline_synchronous_scheduling,
         optimized=async_step_scheduling.optimized_one_step_ahead, inputs=async_step_scheduling.inputs,
         token_reference=async_step_scheduling.token_reference, work=async_step_scheduling.work,
         goal="throughput", host_dispatch="timed", cache="warm",
         check_shapes=[(64, 2, 4, 5, 10), (64, 1, 3, 8, 6)], time_shapes=[(2048, 4, 256, 512, 128)],
         dtypes=["bf16"], min_speedup=1.05),
    Case(name="piecewise_cuda_graphs", baseline=piecewise_cuda_graphs.baseline_eager_steps,
         optimized=piecewise_cuda_graphs.optimized_piecewise_graphs, inputs=piecewise_cuda_graphs.inputs,
         token_reference=token_reference, work=piecewise_cuda_graphs.work, goal="throughput",
         host_dispatch="timed", cache="warm", budget_s=30,
         check_shapes=[(64, 2, 6, 3, 16), (64, 1, 5, 2, 12)], time_shapes=[(2048, 4, 128, 32, 256)],
         dtypes=["bf16"], min_speedup=1.25),
]


@pytest.mark.perf_pair(*CASES)
def test_optimized_arm_beats_baseline(pair, aiperf):
    aiperf.run(pair)
