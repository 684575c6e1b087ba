"""Self-speculative decoding (kernels/ch15/speculative_decoding.py) on the CPU in float32 with a TINY-wide model: its
tokens are exactly target-only greedy decoding's while drafts are both accepted and rejected, and a verify that
accepts drafts without comparing them, or keeps the draft instead of the target's token at the first disagreement,
fails the token check."""

from __future__ import annotations

import pytest
import torch

from kernels.ch15 import speculative_decoding as spec
from kernels.llm import greedy_generate
from pytest_aiperf import Case, checks
from pytest_aiperf.cases import CaseParam

SHAPES = [(64, 4, 1, 3, 2, 8, 24), (64, 4, 1, 2, 3, 5, 16)]


def case(optimized):
    return Case(name="speculative_decoding", baseline=spec.baseline_target_greedy, optimized=optimized,
                inputs=spec.inputs, goal="latency", metric="tpot_p50", token_reference=spec.token_reference,
                check_shapes=SHAPES, time_shapes=SHAPES[:1], dtypes=["fp32"])


@pytest.mark.parametrize("shape", SHAPES, ids=["k3", "k2"])
def test_speculative_tokens_are_target_only_greedy_tokens_with_drafts_accepted_and_rejected(shape):
    prompts, model, plan = spec.inputs(shape, "fp32", 7, "cpu")
    tokens, timeline = spec.optimized_draft_then_verify(prompts, model, plan)
    assert torch.equal(tokens, greedy_generate(model, prompts, plan.new_tokens))
    assert [len(times) for times in timeline.token_s] == [plan.new_tokens] * prompts.shape[0]
    stats = spec.workload(prompts, model, plan)
    assert 0.2 < stats["acceptance_rate"] < 0.9
    assert 1.5 < stats["tokens_per_target_forward"] < plan.k + 1


def test_the_suite_case_passes_its_token_check():
    checks.verify(CaseParam(case(spec.optimized_draft_then_verify), SHAPES[0], "fp32"), "cpu")


@pytest.mark.parametrize("accept", [lambda drafted, target: len(drafted),
                                    lambda drafted, target: min(spec.longest_agreement(drafted, target) + 1,
                                                                len(drafted))],
                         ids=["unchecked", "draft_kept_at_the_disagreement"])
def test_a_wrong_verify_fails_the_token_check(accept):
    with pytest.raises(checks.CorrectnessError, match="optimized diverges from the reference's greedy choice"):
        checks.verify(CaseParam(case(spec.speculative(accept)), SHAPES[0], "fp32"), "cpu")
