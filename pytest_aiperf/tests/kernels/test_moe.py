"""Chapter 17's MoE machinery on the CPU: the fused Triton router (under TRITON_INTERPRET=1) gives the eager
router's expert ids, weights, permutation and counts, and breaks ties toward the lower expert; sorting by expert
and the grouped GEMM give the Hugging Face expert loop's output, experts without tokens included; and planted wrong
arms (a router that drops a token, a grouped GEMM with a wrong expert offset, an expert-parallel dispatch whose router
ignores the logits, on two gloo ranks) fail the case's correctness check."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from kernels import seeded
from kernels.ch17 import expert_parallel_all_to_all, moe, moe_fused_routing, moe_grouped_gemm
from pytest_aiperf import Case, checks, distributed


def test_the_fused_router_gives_the_eager_routers_ids_weights_permutation_and_counts():
    for tokens, experts, top_k in ((9, 8, 2), (17, 64, 6), (4, 5, 5), (3, 128, 8)):
        logits = moe.router_logits(seeded(tokens), tokens, experts, "cpu")
        want = moe_fused_routing.baseline_eager_router(logits, top_k)
        got = moe_fused_routing.fused_route(logits, top_k)
        for name, a, b in zip(("ids", "order", "counts"), want[1:], got[1:]):
            assert torch.equal(a, b), f"{name} differ at {(tokens, experts, top_k)}"
        torch.testing.assert_close(got[0], want[0], rtol=1e-6, atol=1e-7)


def test_the_fused_router_breaks_ties_toward_the_lower_expert_and_sorts_stably():
    logits = torch.tensor([[0.5, 2.0, 2.0, 1.0, 2.0, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
    weights, ids, order, counts = moe_fused_routing.fused_route(logits, 3)
    assert ids.tolist() == [[1, 2, 4], [0, 1, 2]]
    torch.testing.assert_close(weights, torch.full((2, 3), 1 / 3))
    assert order.tolist() == [3, 0, 4, 1, 5, 2]
    assert counts.tolist() == [1, 2, 2, 0, 1, 0]


def test_the_router_sends_every_token_to_its_top_k_experts_once():
    logits = moe.router_logits(seeded(5), 50, 16, "cpu")
    weights, ids = moe.route(logits, 4)
    assert ids.shape == (50, 4) and all(len(set(row)) == 4 for row in ids.tolist())
    assert torch.equal(ids, logits.topk(4).indices)
    torch.testing.assert_close(weights.sum(-1), torch.ones(50))
    order, ends = moe.sort_by_expert(ids, 16)
    assert sorted(order.tolist()) == list(range(200)) and int(ends[-1]) == 200
    assert torch.equal(ids.flatten()[order], ids.flatten().sort(stable=True).values)


def test_the_grouped_moe_equals_the_expert_loop_with_experts_that_get_no_tokens():
    x, logits, gate_up, down, top_k = moe_grouped_gemm.inputs((6, 16, 2, 32, 16), "fp32", 11, "cpu")
    weights, ids = moe.route(logits, top_k)
    assert len(set(ids.flatten().tolist())) < 16
    want = moe.hf_expert_loop(x, weights, ids, gate_up, down)
    torch.testing.assert_close(moe.grouped_moe(x, weights, ids, gate_up, down), want, rtol=1e-5, atol=1e-5)


def test_grouped_mm_applies_each_groups_weight_to_its_rows_only():
    gen = seeded(3)
    a, weight = torch.randn(10, 16, generator=gen), torch.randn(4, 8, 16, generator=gen)
    ends = torch.tensor([2, 2, 7, 10], dtype=torch.int32)
    for dtype in (torch.float32, torch.float64):
        x, w = a.to(dtype), weight.to(dtype)
        want = torch.cat([x[:2] @ w[0].t(), x[2:7] @ w[2].t(), x[7:] @ w[3].t()])
        torch.testing.assert_close(moe.grouped_mm(x, w, ends), want)


def _dropping_router(logits: torch.Tensor, top_k: int) -> tuple[torch.Tensor, ...]:
    """A planted router that loses the last token's last choice: its slot never enters the permutation."""
    weights, ids, order, counts = moe_fused_routing.fused_route(logits, top_k)
    lost = order == ids.numel() - 1
    counts = counts.clone()
    counts[ids.flatten()[-1]] -= 1
    return weights, ids, torch.cat((order[~lost], order[:1])), counts


def _wrong_offset_moe(x, logits, gate_up, down, top_k):
    """A planted grouped MoE whose first expert's end row is one too far: a row of expert 1 runs expert 0."""
    weights, ids = moe.route(logits, top_k)
    order, ends = moe.sort_by_expert(ids, gate_up.shape[0])
    shifted = ends.clone()
    shifted[0] += 1
    rows = moe.grouped_swiglu(x[order // top_k], torch.minimum(shifted, ends[-1]), gate_up, down)
    unsorted = torch.empty_like(rows)
    unsorted[order] = rows
    return (unsorted.view(*ids.shape, -1) * weights[..., None].to(x.dtype)).sum(dim=1)


@pytest.mark.parametrize("planted, case", [
    (_dropping_router, Case(name="moe_fused_routing", baseline=moe_fused_routing.baseline_eager_router,
                            optimized=moe_fused_routing.optimized_fused_triton_router,
                            inputs=moe_fused_routing.inputs, check_shapes=[(6, 8, 2)], time_shapes=[(64, 128, 8)])),
    (_wrong_offset_moe, Case(name="moe_grouped_gemm", baseline=moe_grouped_gemm.baseline_hf_expert_loop,
                             optimized=moe_grouped_gemm.optimized_sorted_grouped_gemm,
                             inputs=moe_grouped_gemm.inputs, check_shapes=[(13, 4, 2, 32, 16)],
                             time_shapes=[(64, 64, 6, 2048, 1408)], dtypes=["bf16"])),
], ids=["router_dropping_a_token", "grouped_gemm_with_a_wrong_expert_offset"])
def test_a_planted_wrong_arm_fails_the_cases_check(planted, case):
    checks.verify(case.params()[0], "cpu", seeds=[1])
    with pytest.raises(checks.CorrectnessError, match="optimized"):
        checks.verify(dataclasses.replace(case, optimized=planted).params()[0], "cpu", seeds=[1])


def _logit_blind_dispatch(x, logits, gate_up, down, top_k):
    """A planted expert-parallel arm whose router sees equal logits: every token goes to experts 0..top_k-1."""
    return expert_parallel_all_to_all.optimized_all_to_all_dispatch(x, logits * 0, gate_up, down, top_k)


def test_a_planted_expert_parallel_dispatch_fails_its_check_on_gloo_ranks():
    case = Case(name="expert_parallel_all_to_all",
                baseline=expert_parallel_all_to_all.baseline_allgather_reduce_scatter,
                optimized=expert_parallel_all_to_all.optimized_all_to_all_dispatch,
                inputs=expert_parallel_all_to_all.inputs, check_shapes=[(6, 4, 2, 16, 8)],
                time_shapes=[(4096, 16, 1, 5120, 8192)], world_sizes=(2,), dtypes=["fp32"])
    planted = dataclasses.replace(case, optimized=_logit_blind_dispatch)
    with pytest.raises(distributed.DistributedError, match="optimized"):
        distributed.measure(planted.params()[0], 2, cuda=False, budget_s=0.0, timeout_s=120, timed=False)
