"""Model-level arms end to end on the CPU clock: a stateful arm's setup and reset stay outside the samples, a
compiled arm's first call is reported apart, a recompilation during timing fails naming its guard, and generated
tokens are checked against the reference's greedy choice."""

from __future__ import annotations

import textwrap

import pytest

CHAPTER = '''
import os
import time

import pytest
import torch

from pytest_aiperf import Case, Stateful

CALLS = {"setup": 0, "reset": 0}


def inputs(shape, dtype, seed, device):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g),)


def baseline_steps(x):
    time.sleep(0.003)
    return x * 3


def setup(x):
    CALLS["setup"] += 1
    time.sleep(0.02)  # building the state: 20 ms that must never reach a sample
    return {"x": x, "acc": x.clone()}


def reset(state):
    CALLS["reset"] += 1
    time.sleep(0.02)
    state["acc"].copy_(state["x"])


def run(state):
    time.sleep(0.001)
    state["acc"].add_(state["x"]).add_(state["x"])
    return state["acc"].clone()


FLIP = int(os.environ.get("TOY_FLIP_AFTER", "0"))
SEEN = [0]
SCALE = [3.0]


@torch.compile(backend="eager", dynamic=False)
def scaled(x):
    return x * SCALE[0]


def compiled_arm(x):
    from torch._dynamo import eval_frame

    SEEN[0] += eval_frame._stance.stance == "fail_on_recompile"  # calls among the samples, whatever the warm-up took
    if FLIP and SEEN[0] == FLIP:
        SCALE[0] = 3.0 + 1e-12  # a guard on SCALE[0] fails: torch.compile recompiles
    time.sleep(0.001)
    return scaled(x)


CASES = [Case(name="stateful", baseline=baseline_steps, optimized=Stateful(setup, run, reset), inputs=inputs,
              check_shapes=[(5,)], time_shapes=[(64,)], min_speedup=1.5),
         Case(name="compiled", baseline=baseline_steps, optimized=compiled_arm, inputs=inputs,
              check_shapes=[(5,), (7,)], time_shapes=[(64,)], min_speedup=1.5)]


@pytest.mark.perf_pair(*CASES)
def test_optimized_arm_beats_baseline(pair, aiperf):
    rec = aiperf.run(pair)
    if pair.case.name == "stateful":
        assert CALLS["reset"] >= rec["rounds"] + rec["warmup_calls"]
'''


@pytest.fixture
def arms_chapter(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_arms=textwrap.dedent(CHAPTER))
    return pytester


def test_a_stateful_arms_setup_and_reset_never_reach_a_sample(arms_chapter: pytest.Pytester) -> None:
    result = arms_chapter.runpytest_subprocess("-k", "stateful", "--aiperf-backend=cpu", "--aiperf-budget=0.5",
                                    "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.re_match_lines([r"stateful-fp32-64 +\d+(\.\d+)? ms +[1-9](\.\d+)? ms +\d\.\d+x .* PASS\*? .*"])


def test_a_compiled_arms_first_call_is_reported_apart_from_its_samples(arms_chapter: pytest.Pytester) -> None:
    result = arms_chapter.runpytest_subprocess("-k", "compiled", "--aiperf-backend=cpu", "--aiperf-budget=0.5",
                                    "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.re_match_lines([r"first calls that compiled \(outside the samples\):",
                                  r"compiled-fp32-64: optimized .*, 1 graph \(steady \S+ ms\)"])


def test_a_recompilation_during_timing_fails_the_case_naming_the_guard(arms_chapter: pytest.Pytester,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOY_FLIP_AFTER", "2")
    result = arms_chapter.runpytest_subprocess("-k", "compiled", "--aiperf-backend=cpu", "--aiperf-budget=0.5",
                                    "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines([r".*RecompiledDuringTiming: compiled-fp32-64: torch.compile recompiled during timing.*",
                                  r".*SCALE.*"])


COLD = '''
import os
import time
from pathlib import Path

import pytest
import torch

from pytest_aiperf import Case

COMPILED = []


def inputs(shape, dtype, seed, device):
    return (torch.full(shape, 2.0),)


def compile_then_run(x):
    if not COMPILED:  # this process compiles once: every sample is a fresh process, so every sample pays it
        time.sleep(0.08)
        COMPILED.append(True)
    return x * 2


def prepare(folder):
    Path(folder, "artifacts").write_text("compiled")


def load_then_run(x):
    if not COMPILED:
        time.sleep(0.08 if not Path(os.environ["AIPERF_COLD_START_DIR"], "artifacts").exists() else 0.005)
        COMPILED.append(True)
    return x + x


CASES = [Case(name="cache_artifacts", baseline=compile_then_run, optimized=load_then_run, inputs=inputs,
              prepare=prepare, goal="cold_start", check_shapes=[(3,)], time_shapes=[(16,)], min_speedup=2.0)]


@pytest.mark.perf_pair(*CASES)
def test_optimized_arm_beats_baseline(pair, aiperf):
    aiperf.run(pair)
'''


def run_chapter(pytester: pytest.Pytester, source: str, budget: str) -> pytest.RunResult:
    """A one-case chapter run on the CPU clock in its own process."""
    pytester.makepyfile(test_chapter=textwrap.dedent(source))
    return pytester.runpytest_subprocess("--aiperf-backend=cpu", f"--aiperf-budget={budget}", "-p", "no:cacheprovider")


def test_a_cold_start_case_times_each_first_call_in_a_fresh_process(pytester: pytest.Pytester) -> None:
    result = run_chapter(pytester, COLD, "3")
    result.assert_outcomes(passed=1)
    result.stdout.re_match_lines([r"cache_artifacts-fp32-16 +\d{2,3}(\.\d)? ms +\d{1,2}(\.\d+)? ms .* PASS .*"])


SERVING = '''
import time

import pytest
import torch

from pytest_aiperf import Case
from pytest_aiperf.latency import Timeline


def inputs(shape, dtype, seed, device):
    requests, new_tokens = shape
    return (torch.arange(requests * new_tokens).reshape(requests, new_tokens) % 7,)


def engine(step_s):
    def run(tokens):
        timeline = Timeline()
        start = time.perf_counter()
        requests = [timeline.add(start) for _ in range(tokens.shape[0])]
        for _ in range(tokens.shape[1]):
            time.sleep(step_s)  # one decode step of every request
            for r in requests:
                timeline.tokens(r)
        return tokens.clone(), timeline
    return run


CASES = [Case(name="decode_steps", baseline=engine(0.002), optimized=engine(0.0005), inputs=inputs,
              goal="latency", metric="tpot_p50", check_shapes=[(2, 3)], time_shapes=[(4, 8)], min_speedup=2.0)]


@pytest.mark.perf_pair(*CASES)
def test_optimized_arm_beats_baseline(pair, aiperf):
    aiperf.run(pair)
'''


def test_a_latency_case_is_gated_on_its_declared_request_metric(pytester: pytest.Pytester) -> None:
    result = run_chapter(pytester, SERVING, "0.5")
    result.assert_outcomes(passed=1)
    result.stdout.re_match_lines([r"decode_steps-fp32-4x8 +\d(\.\d+)? ms +\d+(\.\d+)? [um]s .* PASS .*",
                                  r"request latency \(baseline -> optimized, medians over calls\):",
                                  r"decode_steps-fp32-4x8: ttft_p50 \S+ ms -> .*tpot_p50 \S+ ms -> .*tokens/s .*"])
