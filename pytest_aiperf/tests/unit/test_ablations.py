"""Ablation arms of an end-to-end case: checked like the arms, timed against the baseline by the pair's own loop on a
scripted clock (no GPU, no real timing), reported with what each removed technique contributes, never gated."""

from __future__ import annotations

from typing import Any, Callable

import pytest
import torch

from pytest_aiperf import Case, Stateful, Tolerance
from pytest_aiperf.ablations import contributions, entry, measured, product
from pytest_aiperf.checks import CorrectnessError, verify
from pytest_aiperf.notes import ablation_block
from pytest_aiperf.tests.unit.test_measure import ScriptedClock


def test_each_ablation_is_timed_against_the_baseline_and_reported_as_its_speedup() -> None:
    clock = ScriptedClock()
    baseline = lambda x: 12.0 * x  # noqa: E731
    found = measured(clock, baseline, {"no_compile": lambda x: 6.0 * x, "no_graphs": lambda x: 3.0 * x}, (1.0,),
                     [(1.0,)], budget_s=0.05, options={"cold": False, "hide_dispatch": True})
    assert list(found) == ["no_compile", "no_graphs"]
    assert found["no_compile"]["speedup"] == pytest.approx(2.0) and found["no_graphs"]["speedup"] == pytest.approx(4.0)
    assert found["no_graphs"]["ci"] == [pytest.approx(4.0), pytest.approx(4.0)]
    assert found["no_graphs"]["median_ms"] == 3.0 and found["no_graphs"]["baseline_median_ms"] == 12.0
    assert found["no_compile"]["rounds"] >= 3 and found["no_compile"]["first_call_ms"] is not None
    assert baseline in clock.called, "every ablation is paired with fresh calls of the baseline"


def test_a_stateful_ablation_is_reset_outside_the_clock_before_every_timed_call() -> None:
    resets: list[int] = []
    arm = Stateful(setup=lambda x: {"x": x}, run=lambda state: state["x"], reset=lambda state: resets.append(1))
    clock = ScriptedClock()
    found = measured(clock, lambda x: 2.0 * x, {"no_technique": arm}, (1.0,), [(1.0,)], budget_s=0.05,
                     options={"cold": False})
    timed_calls = sum(1 for fn in clock.called if getattr(fn, "arm", None) is arm)
    assert found["no_technique"]["speedup"] == pytest.approx(2.0)
    assert len(resets) == timed_calls + 1, "one reset before the first call, then one before each timed call"


def test_contributions_multiply_to_the_full_speedup_when_the_techniques_are_independent() -> None:
    ablated = {"no_a": entry([6.0] * 5, [2.0] * 5), "no_b": entry([6.0] * 5, [3.0] * 5)}
    assert contributions(6.0, ablated) == {"no_a": pytest.approx(2.0), "no_b": pytest.approx(3.0)}
    assert product(6.0, ablated) == pytest.approx(6.0)
    assert product(6.0, {}) is None


def test_the_summary_lists_each_ablation_with_what_its_technique_contributes() -> None:
    record = {"key": "stack-fp32-8", "chapter": "ch20", "speedup": 6.0,
              "ablations": {"no_a": entry([6.0] * 5, [2.0] * 5), "no_b": entry([6.0] * 5, [1.5] * 5)}}
    block = ablation_block([record, {"key": "plain-fp32-8", "speedup": 2.0}])
    assert block.splitlines() == [
        "ablations (the optimized stack with one technique removed, speedup over the baseline; reported, never "
        "gated):",
        "stack-fp32-8: full 6.00x; no_a 3.00x [3.00, 3.00] (a gives 2.00x); no_b 4.00x [4.00, 4.00] (b gives 1.50x); "
        "the parts multiply to 3.00x"]
    assert ablation_block([{"key": "plain-fp32-8", "speedup": 2.0}]) == ""


def inputs(shape, dtype, seed, device):
    return (torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device),)


def stack(**ablations: Callable[..., Any]) -> Case:
    return Case(name="stack", baseline=lambda x: 2 * x, optimized=lambda x: x + x, inputs=inputs,
                check_shapes=[(33,)], time_shapes=[(64,)], ablations=ablations)


def test_every_ablation_arm_is_checked_and_its_error_recorded() -> None:
    report = verify(stack(no_fusion=lambda x: x * 2.0, no_graphs=lambda x: x.clone() * 2).params()[0], "cpu")
    assert set(report.ablations) == {"no_fusion", "no_graphs"} and max(report.ablations.values()) < 1e-6
    assert set(report.to_json()["ablations"]) == {"no_fusion", "no_graphs"}


def test_an_ablation_arm_computing_another_function_fails_its_check() -> None:
    with pytest.raises(CorrectnessError, match="ablation no_fusion disagrees with the float64 reference"):
        verify(stack(no_graphs=lambda x: x * 2.0, no_fusion=lambda x: x * 2.0 + 1e-2).params()[0], "cpu")


def test_an_ablation_arm_is_held_to_the_declared_tolerance_of_its_case() -> None:
    case = Case(name="stack", baseline=lambda x: 2 * x, optimized=lambda x: 2 * x.to(torch.bfloat16).float(),
                inputs=inputs, check_shapes=[(257,)], time_shapes=[(64,)],
                tolerance=Tolerance(rel=2e-2, reason="bf16 rounding of fp32 inputs"),
                ablations={"no_fusion": lambda x: 2 * x.to(torch.float16).float(),
                           "no_graphs": lambda x: 2 * x.to(torch.float8_e4m3fn).float()})
    with pytest.raises(CorrectnessError, match="ablation no_graphs disagrees"):
        verify(case.params()[0], "cpu")


@pytest.mark.parametrize("bad", [
    dict(goal="memory"), dict(world_sizes=(2,)),
    dict(ablations={"No Compile": lambda x: x}), dict(ablations={"no_compile": "not an arm"})])
def test_ablations_belong_to_single_process_timed_cases_with_snake_case_names(bad: dict[str, Any]) -> None:
    kwargs = dict(ablations={"no_compile": lambda x: x}) | bad
    with pytest.raises(ValueError, match="ablations map lower_snake_case names to arms"):
        Case(name="stack", baseline=lambda x: x, optimized=lambda x: x, inputs=inputs, check_shapes=[(3,)],
             time_shapes=[(3,)], **kwargs)
