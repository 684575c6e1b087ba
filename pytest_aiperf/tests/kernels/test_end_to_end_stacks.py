"""The chapter 20 stacks: each ablation removes exactly one technique of its optimized stack, the training stack's
FP8 MLPs are chapter 19's and compile once, the serving stacks replay the techniques they name, and planted wrong
arms (another model's weights, an FP8 MLP with its gate and up projections swapped) fail the check."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from kernels.ch15.serving_arms import served, served_model, token_reference
from kernels.ch19.fp8_rowwise_training_mlp import Fp8RowwiseMLP
from kernels.ch20 import e2e_decode_latency, e2e_serving_stack, e2e_training_step
from kernels.ch20.e2e_serving_stack import FULL, ServingStack, server, stack_arm
from kernels.ch20.e2e_training_step import Fp8RowwiseSwiGLU, fp8_mlps
from kernels.llm import Decoder
from pytest_aiperf import Case, Stateful, Tolerance, arms
from pytest_aiperf.checks import CorrectnessError, verify

SHAPE = (64, 2, 2, 3, 12, 160)
TRAINING_SHAPE = (64, 2, 2, 16, 2)
TOLERANCE = 2e-2  # the rel of e2e_training_step's Tolerance in suites/ch20

# Dynamo reads ``.grad`` of the non-leaf activations a compiled layer receives (see suites/ch20).
pytestmark = pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf Tensor:UserWarning")


def test_every_training_ablation_turns_off_one_technique_of_the_full_stack() -> None:
    full = dataclasses.asdict(e2e_training_step.FULL)
    for name, arm in e2e_training_step.ABLATIONS.items():
        state = arm.setup(*e2e_training_step.inputs((64, 1, 1, 8, 1), "fp32", 0, "cpu"))
        changed = {k for k, v in dataclasses.asdict(state["stack"]).items() if v != full[k]}
        assert len(changed) == 1, (name, changed)


def test_the_fp8_rewrite_runs_every_mlp_on_chapter_19s_function_and_trains_the_same_parameters() -> None:
    model = e2e_training_step.inputs(TRAINING_SHAPE, "tf32", 0, "cpu")[-1]
    before = list(model.parameters())
    rewritten = fp8_mlps(model)
    assert all(a is b for a, b in zip(before, rewritten.parameters(), strict=True))
    mlp = rewritten.layers[0].mlp
    assert isinstance(mlp, Fp8RowwiseSwiGLU)
    x = torch.randn(2, 5, 64, generator=torch.Generator().manual_seed(0))
    weights = (mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight)
    want = Fp8RowwiseMLP.apply(*(t.to(torch.bfloat16) for t in (x.flatten(0, 1), *weights)))
    got = mlp(x)
    assert torch.equal(got.flatten(0, 1), want)
    got.float().square().sum().backward()
    assert all(w.grad is not None and w.grad.dtype == torch.float32 for w in weights)


def test_the_compiled_fp8_stack_compiles_on_its_first_call_and_never_again() -> None:
    given = e2e_training_step.inputs(TRAINING_SHAPE, "tf32", 0, "cpu")
    arms.fresh_compiles()
    call = arms.timed(e2e_training_step.optimized_training_stack, given)
    first = arms.first_call(call, given, lambda: None)
    assert first.graphs == 3, "each layer's attention half and its residual add after the eager FP8 MLP, shared by " \
                              "every layer, and the head and loss"
    with arms.no_recompile("the FP8 training stack"):
        for _ in range(2):
            call.before_call()
            call(*given)


def test_an_fp8_stack_with_its_gate_and_up_projections_swapped_fails_the_check() -> None:
    def swapped(model: Decoder) -> Decoder:
        for layer in fp8_mlps(model).layers:
            layer.mlp.gate_proj, layer.mlp.up_proj = layer.mlp.up_proj, layer.mlp.gate_proj
        return model

    planted = e2e_training_step.arm(dataclasses.replace(e2e_training_step.FULL, rewrite=swapped))
    case = Case(name="e2e_training_step", baseline=e2e_training_step.baseline_eager_fp32_loop, optimized=planted,
                inputs=e2e_training_step.inputs, reference=e2e_training_step.reference, dtypes=["tf32"],
                check_shapes=[TRAINING_SHAPE], time_shapes=[TRAINING_SHAPE],
                tolerance=Tolerance(rel=TOLERANCE, reason="the suite's declared tolerance"))
    with pytest.raises(CorrectnessError, match="optimized output #1 disagrees with the float64 reference"):
        verify(case.params()[0], "cpu", seeds=[0])


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
