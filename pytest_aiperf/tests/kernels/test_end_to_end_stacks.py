"""The chapter 20 stacks: each ablation removes exactly one technique of its optimized stack, the serving stacks
replay the techniques they name, and a planted wrong ablation (another model's weights) fails the token check."""

from __future__ import annotations

import dataclasses

import pytest

from kernels.ch15.serving_arms import served, served_model, token_reference
from kernels.ch20 import e2e_decode_latency, e2e_serving_stack, e2e_training_step
from kernels.ch20.e2e_serving_stack import FULL, ServingStack, server, stack_arm
from pytest_aiperf import Case, Stateful
from pytest_aiperf.checks import CorrectnessError, verify

SHAPE = (64, 2, 2, 3, 12, 160)


def test_every_training_ablation_turns_off_one_technique_of_the_full_stack() -> None:
    full = dataclasses.asdict(e2e_training_step.FULL)
    for name, arm in e2e_training_step.ABLATIONS.items():
        state = arm.setup(*e2e_training_step.inputs((64, 1, 1, 8, 1), "fp32", 0, "cpu"))
        changed = {k for k, v in dataclasses.asdict(state["stack"]).items() if v != full[k]}
        assert len(changed) == 1, (name, changed)


def test_every_decode_ablation_turns_off_one_technique_of_the_full_stack() -> None:
    given = e2e_decode_latency.inputs((64, 1, 4, 3), "bf16", 0, "cpu")
    for arm in e2e_decode_latency.ABLATIONS.values():
        stack = arm.setup(*given).stack
        assert sum(getattr(stack, f) != getattr(e2e_decode_latency.FULL, f) for f in ("compiled", "graphs")) == 1


def test_a_prefix_cache_or_chunked_prefill_without_continuous_batching_is_refused() -> None:
    with pytest.raises(ValueError, match="needs"):
        ServingStack(continuous=False, paged=True, prefix_cache=True, chunked=False, kernel=True)
    with pytest.raises(ValueError, match="needs"):
        ServingStack(continuous=False, paged=True, prefix_cache=False, chunked=True, kernel=True)


def test_the_serving_stacks_replay_the_techniques_they_name() -> None:
    given = e2e_serving_stack.inputs(SHAPE, "bf16", 0, "cpu")
    full = served(e2e_serving_stack.optimized_serving_stack, given)
    uncached = served(e2e_serving_stack.ABLATIONS["no_prefix_cache"], given)
    hf = served(e2e_serving_stack.baseline_hf_style_server, given)
    assert full.prefix_hit_tokens > 0 and uncached.prefix_hit_tokens == 0
    assert hf.discarded_tokens > 0 and full.discarded_tokens == 0
    assert full.steps < hf.steps
    assert server(FULL, *given).attention == "gather", "the paged kernel runs on a GPU only"


def test_an_ablation_serving_another_models_weights_fails_the_token_check() -> None:
    other = served_model(64, 2, "bf16", 99, "cpu")
    wrong = stack_arm(FULL)
    planted = Stateful(setup=lambda trace, model, deployment: wrong.setup(trace, other, deployment), run=wrong.run,
                       reset=wrong.reset)
    case = Case(name="e2e_serving_stack", baseline=e2e_serving_stack.baseline_hf_style_server,
                optimized=e2e_serving_stack.optimized_serving_stack, inputs=e2e_serving_stack.inputs,
                token_reference=token_reference, goal="latency", metric="e2e_p99", dtypes=["bf16"],
                check_shapes=[SHAPE], time_shapes=[SHAPE], ablations={"no_prefix_cache": planted})
    with pytest.raises(CorrectnessError, match="ablation no_prefix_cache diverges from the reference's greedy choice"):
        verify(case.params()[0], "cpu", seeds=[0])
