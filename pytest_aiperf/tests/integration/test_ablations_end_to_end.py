"""Ablation arms end to end on the CPU clock: timed after the verdict, carried in the record, listed under the
summary, never gated; an ablation arm that computes another function fails the case before anything is timed."""

from __future__ import annotations

import textwrap

import pytest

CHAPTER = '''
import time

import pytest
import torch

from pytest_aiperf import Case


def inputs(shape, dtype, seed, device):
    return (torch.randn(shape, generator=torch.Generator().manual_seed(seed)),)


def slow(ms):
    def arm(x):
        time.sleep(ms / 1e3)
        return x * 2
    arm.__name__ = f"double_in_{ms}ms"
    return arm


def wrong(x):
    return x * 2 + 1e-2


CASES = [Case(name="stack", baseline=slow(8), optimized=slow(1), inputs=inputs, check_shapes=[(7,)],
              time_shapes=[(64,)], min_speedup=1.5, ablations={"no_fusion": slow(4), "no_graphs": {graphs}})]


@pytest.mark.perf_pair(*CASES)
def test_optimized_arm_beats_baseline(pair, aiperf):
    rec = aiperf.run(pair)
    assert list(rec["ablations"]) == ["no_fusion", "no_graphs"]
    assert rec["verdict"] == "PASS" and rec["ablations"]["no_fusion"]["speedup"] < rec["speedup"]
'''


@pytest.fixture
def stack(pytester: pytest.Pytester):
    def write(graphs: str) -> pytest.Pytester:
        pytester.makepyfile(test_stack=textwrap.dedent(CHAPTER).replace("{graphs}", graphs))
        return pytester
    return write


def test_ablations_reach_the_record_and_the_summary_without_touching_the_verdict(stack) -> None:
    result = stack("slow(25)").runpytest("--aiperf-backend=cpu", "--aiperf-budget=0.4", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.re_match_lines([r".*ablations \(the optimized stack with one technique removed.*",
                                  r"stack-fp32-64: full \S+x; no_fusion \S+x .*\(fusion gives \S+x\); no_graphs \S+x "
                                  r".*\(graphs gives \S+x\); the parts multiply to \S+x"])


def test_an_ablation_computing_another_function_fails_the_case(stack) -> None:
    result = stack("wrong").runpytest("--aiperf-backend=cpu", "--aiperf-budget=0.4", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines([r".*ablation no_graphs disagrees with the float64 reference.*"])
