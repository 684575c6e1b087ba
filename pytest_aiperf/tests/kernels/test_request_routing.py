"""Chapter 17's request-level routing on the CPU with the TINY model: the affinity router sends requests sharing a
prefix to one replica within its load cap, length buckets cover every prompt once, and planted wrong arms (a LoRA
batch applying a neighbour's adapter, a padded prefill reading the last padded position, a replica replay that
loses a request; on two gloo ranks, replicas whose routers disagree about a request so that no rank or both serve
it) fail the case's correctness check."""

from __future__ import annotations

import dataclasses
import functools
import math

import pytest
import torch

import torch.distributed as dist

from kernels.ch17 import length_bucketed_batching, multi_lora_batched, prefix_aware_routing, \
    prefix_aware_routing_replicas
from kernels.llm import TINY
from kernels.serving import shared_prefix_trace
from pytest_aiperf import Case, Stateful, checks, distributed


def test_the_affinity_router_keeps_each_prefix_on_one_replica_within_its_cap():
    trace = shared_prefix_trace(6, 5, 8, 3, 2, TINY.vocab, seed=4)
    chosen = prefix_aware_routing.prefix_affinity(trace, 3, 4)
    cap = math.ceil(prefix_aware_routing.LOAD_FACTOR * len(trace) / 3)
    assert all(chosen.count(r) <= cap for r in range(3))
    for group in range(6):
        replicas = {where for r, where in zip(trace.requests, chosen) if r.group == group}
        preferred = prefix_aware_routing.preference(trace.requests[[r.group for r in trace.requests].index(group)]
                                                    .prompt, 3, 4)[0]
        assert preferred in replicas and (len(replicas) == 1 or any(chosen.count(r) == cap for r in replicas))
    assert prefix_aware_routing.round_robin(trace, 3, 4) == [i % 3 for i in range(len(trace))]


def test_length_buckets_cover_every_prompt_once_and_sort_within_windows():
    lengths = [5, 1, 9, 3, 3, 7, 2, 8, 4]
    batches = length_bucketed_batching.batches_by_length(lengths, 2, 4)
    assert sorted(i for b in batches for i in b) == list(range(9))
    assert batches[:2] == [[1, 3], [0, 2]] and all(max(b) - min(b) < 4 for b in batches)


def _neighbours_adapter(model, tokens, keys, values, ids, adapters):
    return multi_lora_batched.optimized_batched_adapter_deltas(model, tokens, keys, values,
                                                               (ids + 1) % adapters.a["q_proj"].shape[0], adapters)


def _last_padded_position(model, tokens, lengths, batch, window):
    return length_bucketed_batching.padded_prefill(model, tokens, torch.full_like(lengths, int(lengths.max())),
                                                   length_bucketed_batching.batches_by_length(lengths.tolist(), batch,
                                                                                              window))


def _losing_router(trace, replicas, block):
    """Routes the third request to no replica (at seed 2 its tokens have no near-tie, so the check sees the loss)."""
    chosen = prefix_aware_routing.prefix_affinity(trace, replicas, block)
    return [replicas if i == 2 else where for i, where in enumerate(chosen)]


LORA = Case(name="multi_lora_batched", baseline=multi_lora_batched.baseline_forward_per_adapter,
            optimized=multi_lora_batched.optimized_batched_adapter_deltas, inputs=multi_lora_batched.inputs,
            reference=multi_lora_batched.reference, check_shapes=[(64, 2, 6, 5, 3, 4)],
            time_shapes=[(2048, 16, 64, 512, 32, 16)], dtypes=["bf16"])
BUCKETS = Case(name="length_bucketed_batching", baseline=length_bucketed_batching.baseline_arrival_order_batches,
               optimized=length_bucketed_batching.optimized_length_bucketed_batches,
               inputs=length_bucketed_batching.inputs, reference=length_bucketed_batching.reference,
               check_shapes=[(64, 2, 8, 4, 8, 6, 24)], time_shapes=[(2048, 4, 1024, 16, 256, 512, 4096)],
               dtypes=["bf16"])
REPLICAS = Case(name="prefix_aware_routing", baseline=prefix_aware_routing.baseline_round_robin,
                optimized=prefix_aware_routing.optimized_prefix_affinity, inputs=prefix_aware_routing.inputs,
                token_reference=prefix_aware_routing.token_reference, check_shapes=[(64, 2, 2, 2, 3, 8, 2)],
                time_shapes=[(2048, 4, 4, 32, 16, 4096, 16)], dtypes=["bf16"])
LOSING = Stateful(setup=prefix_aware_routing._setup(_losing_router), run=prefix_aware_routing.replay,
                  reset=prefix_aware_routing.reset)


@pytest.mark.parametrize("case, planted", [(LORA, _neighbours_adapter), (BUCKETS, _last_padded_position),
                                           (REPLICAS, LOSING)],
                         ids=["lora_with_a_neighbours_adapter", "prefill_reading_the_last_padded_position",
                              "replicas_losing_a_request"])
def test_a_planted_wrong_request_routing_arm_fails_the_cases_check(case, planted):
    checks.verify(case.params()[0], "cpu", seeds=[2])
    with pytest.raises(checks.CorrectnessError, match="optimized|diverges|missing"):
        checks.verify(dataclasses.replace(case, optimized=planted).params()[0], "cpu", seeds=[2])


def _dropping_router(trace, replicas, block):
    """Each rank routes the third request to the next rank, so no rank serves it."""
    chosen = prefix_aware_routing.prefix_affinity(trace, replicas, block)
    return [(dist.get_rank() + 1) % replicas if i == 2 else where for i, where in enumerate(chosen)]


def _duplicating_router(trace, replicas, block):
    """Each rank routes the third request to itself, so every rank serves it."""
    chosen = prefix_aware_routing.prefix_affinity(trace, replicas, block)
    return [dist.get_rank() if i == 2 else where for i, where in enumerate(chosen)]


def _replicas_routed_by(router):
    return Stateful(setup=functools.partial(prefix_aware_routing_replicas.setup, router),
                    run=prefix_aware_routing_replicas.replay, reset=prefix_aware_routing_replicas.reset)


@pytest.mark.parametrize("router, message", [(_dropping_router, "optimized diverges .* request 2"),
                                             (_duplicating_router, "holds too many tokens")],
                         ids=["no_rank_serving_a_request", "both_ranks_serving_a_request"])
def test_replicas_that_disagree_about_a_request_fail_the_check_on_gloo_ranks(router, message):
    case = Case(name="prefix_aware_routing_replicas", baseline=prefix_aware_routing_replicas.baseline_round_robin,
                optimized=_replicas_routed_by(router), inputs=prefix_aware_routing_replicas.inputs,
                token_reference=prefix_aware_routing_replicas.token_reference, goal="latency", metric="ttft_p50",
                world_sizes=(2,), check_shapes=[(64, 2, 2, 2, 8, 2, 2000)],
                time_shapes=[(4096, 4, 64, 8, 4096, 16, 100)], dtypes=["bf16"])
    with pytest.raises(distributed.DistributedError, match=message):
        distributed.measure(case.params()[0], 2, cuda=False, budget_s=0.0, timeout_s=120, timed=False)
