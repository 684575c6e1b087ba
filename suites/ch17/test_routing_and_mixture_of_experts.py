"""Chapter 17: routing and mixture of experts. Routing tokens to experts, requests to adapters, to replicas and to
batches; every pair computes the same outputs in both arms (no early exit, no smaller model).

- moe_grouped_gemm: the Hugging Face per-expert MoE loop vs tokens sorted by expert and two grouped GEMMs
  (Qwen3-30B-A3B at prefill, DeepSeek-V2-Lite at decode).
- moe_fused_routing: the eager router (softmax, top-k, renormalize, argsort, bincount and its sync) vs two Triton
  kernels giving the same expert ids, weights, permutation and counts.
- multi_lora_batched: one forward per adapter group vs one base forward with per-request LoRA deltas (gathered bmm),
  Llama-3.2-1B at decode over 32 and over 4 adapters.
- prefix_aware_routing: round-robin vs prefix-affinity routing over 4 serving-engine replicas emulated in turn on
  one GPU (prefill saved by each replica's prefix cache; no inter-GPU contention, no network).
- length_bucketed_batching: padded prefill batches in arrival order vs batches of similar length from sorted
  windows, for a static-shape engine.
- expert_parallel_all_to_all (2 and 4 ranks): all-gather tokens + reduce-scatter outputs vs all-to-all dispatch and
  combine of the routed rows (Llama-4-Scout's top-1 experts).
- prefix_aware_routing_replicas (2 and 4 ranks): round-robin vs prefix-affinity routing of an online trace over one
  serving-engine replica a GPU (TTFT p50 of the ranks' merged timelines, TTFT p99 guarded: queueing and load
  imbalance between replicas).

Each kernel module's header has the napkin math and the predicted H100 and H200 speedups; ``min_speedup`` here is
the floor, ~70% of the low end of the prediction (never below 1.05). The pairs whose baseline is bound by eager
launches and syncs (the MoE loop, the router, the per-adapter forwards) and the serving replay time the host's
dispatch too (``host_dispatch="timed"``): the launches are the lesson.
"""

from __future__ import annotations

import pytest

from kernels.ch17 import (expert_parallel_all_to_all, length_bucketed_batching, moe_fused_routing, moe_grouped_gemm,
                          multi_lora_batched, prefix_aware_routing, prefix_aware_routing_replicas)
from pytest_aiperf import Case

CASES = [
    Case(name="moe_grouped_gemm", baseline=moe_grouped_gemm.baseline_hf_expert_loop,
         optimized=moe_grouped_gemm.optimized_sorted_grouped_gemm, inputs=moe_grouped_gemm.inputs,
         work=moe_grouped_gemm.work, workload=moe_grouped_gemm.workload,
         check_shapes=[(13, 8, 2, 32, 16), (5, 16, 2, 32, 16), (40, 8, 3, 64, 32)],
         time_shapes=[(4096, 128, 8, 2048, 768), (64, 64, 6, 2048, 1408)], dtypes=["bf16"], min_speedup=4.2,
         host_dispatch="timed"),
    Case(name="moe_fused_routing", baseline=moe_fused_routing.baseline_eager_router,
         optimized=moe_fused_routing.optimized_fused_triton_router, inputs=moe_fused_routing.inputs,
         work=moe_fused_routing.work, check_shapes=[(5, 8, 2), (7, 6, 6), (9, 128, 8)],
         time_shapes=[(64, 128, 8), (4096, 128, 8)], dtypes=["fp32"], min_speedup=1.75, host_dispatch="timed"),
    Case(name="multi_lora_batched", baseline=multi_lora_batched.baseline_forward_per_adapter,
         optimized=multi_lora_batched.optimized_batched_adapter_deltas, inputs=multi_lora_batched.inputs,
         reference=multi_lora_batched.reference, work=multi_lora_batched.work,
         workload=multi_lora_batched.workload, goal="throughput",
         check_shapes=[(64, 2, 5, 7, 3, 4), (64, 2, 8, 3, 2, 8)],
         time_shapes=[(2048, 16, 64, 512, 32, 16), (2048, 16, 64, 512, 4, 16)], dtypes=["bf16"], min_speedup=2.1,
         host_dispatch="timed"),
    Case(name="prefix_aware_routing", baseline=prefix_aware_routing.baseline_round_robin,
         optimized=prefix_aware_routing.optimized_prefix_affinity, inputs=prefix_aware_routing.inputs,
         token_reference=prefix_aware_routing.token_reference, work=prefix_aware_routing.work,
         workload=prefix_aware_routing.workload, goal="throughput", dtypes=["bf16"], cache="warm",
         host_dispatch="timed", check_shapes=[(64, 2, 2, 3, 4, 12, 2)],
         time_shapes=[(2048, 4, 4, 32, 16, 4096, 16)], min_speedup=1.05, budget_s=45),
    Case(name="length_bucketed_batching", baseline=length_bucketed_batching.baseline_arrival_order_batches,
         optimized=length_bucketed_batching.optimized_length_bucketed_batches,
         inputs=length_bucketed_batching.inputs, reference=length_bucketed_batching.reference,
         work=length_bucketed_batching.work, workload=length_bucketed_batching.workload, goal="throughput",
         check_shapes=[(64, 2, 12, 4, 8, 6, 24), (64, 2, 9, 2, 9, 5, 16)],
         time_shapes=[(2048, 4, 1024, 16, 256, 512, 4096)], dtypes=["bf16"], min_speedup=1.75, budget_s=40),
]

DISTRIBUTED = [
    Case(name="expert_parallel_all_to_all", baseline=expert_parallel_all_to_all.baseline_allgather_reduce_scatter,
         optimized=expert_parallel_all_to_all.optimized_all_to_all_dispatch,
         inputs=expert_parallel_all_to_all.inputs, work=expert_parallel_all_to_all.work, world_sizes=(2, 4),
         check_shapes=[(7, 8, 2, 16, 8), (5, 4, 1, 32, 16)], time_shapes=[(4096, 16, 1, 5120, 8192)],
         dtypes=["bf16"], min_speedup=1.05),
    Case(name="prefix_aware_routing_replicas", baseline=prefix_aware_routing_replicas.baseline_round_robin,
         optimized=prefix_aware_routing_replicas.optimized_prefix_affinity,
         inputs=prefix_aware_routing_replicas.inputs, token_reference=prefix_aware_routing_replicas.token_reference,
         goal="latency", metric="ttft_p50", guards=prefix_aware_routing_replicas.GUARDS, world_sizes=(2, 4),
         dtypes=["bf16"], cache="warm", host_dispatch="timed", check_shapes=[(64, 2, 3, 3, 12, 2, 2000)],
         time_shapes=[(4096, 4, 64, 8, 4096, 16, 100)], min_speedup=1.05, budget_s=120),
]


@pytest.mark.perf_pair(*CASES)
def test_optimized_arm_beats_baseline(pair, aiperf):
    aiperf.run(pair)


@pytest.mark.perf_pair(*DISTRIBUTED)
def test_optimized_arm_beats_baseline_across_ranks(pair, aiperf):
    aiperf.run(pair)
