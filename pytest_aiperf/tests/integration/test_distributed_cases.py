"""Distributed cases end to end on the CPU: the plugin spawns gloo ranks, verifies, times, judges and records them
under ``expectations/<ranks>x_<hardware>/``."""

from __future__ import annotations

import json
import textwrap

import pytest

CHAPTER = '''
"""A toy distributed chapter: gradients all-reduced one tensor at a time vs as one flat buffer."""
import os
import time

import pytest
import torch
import torch.distributed as dist

from pytest_aiperf import Case


def shard(shape, dtype, seed, device):
    generator = torch.Generator().manual_seed(seed * 31 + dist.get_rank())
    return (torch.randn(shape, generator=generator, dtype=torch.float32).to(device),)


def per_tensor(grads):
    time.sleep(float(os.environ.get("TOY_PER_TENSOR_MS", "8")) / 1e3)
    out = grads.clone()
    for row in out:
        dist.all_reduce(row)
    return out


def bucketed(grads):
    time.sleep(float(os.environ.get("TOY_BUCKETED_MS", "2")) / 1e3)  # a host-clock time that noise cannot swamp
    out = grads.clone()
    dist.all_reduce(out)
    return out if not os.environ.get("TOY_WRONG") else grads.clone()


WORLDS = tuple(int(n) for n in os.environ.get("TOY_WORLDS", "2").split(","))
CASES = [Case(name="bucketed_allreduce", baseline=per_tensor, optimized=bucketed, inputs=shard,
              check_shapes=[(5, 7)], time_shapes=[(8, 64)], world_sizes=WORLDS, min_speedup=1.2)]


@pytest.mark.perf_pair(*CASES)
def test_optimized_arm_beats_baseline(pair, aiperf):
    aiperf.run(pair)
'''


@pytest.fixture
def chapter(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_collectives=textwrap.dedent(CHAPTER))
    return pytester


def test_a_distributed_case_is_timed_on_its_ranks_and_recorded_under_their_count(
        chapter: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOY_PER_TENSOR_MS", "30")  # host-clock times on gloo: long enough for a loaded CI machine's
    monkeypatch.setenv("TOY_BUCKETED_MS", "6")     # noise to stay inside the widest margin a recording may hold
    result = chapter.runpytest_subprocess("-m", "perf", "--aiperf-backend=cpu", "--aiperf-budget=3",
                                          "--update-expectations", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.re_match_lines([r"bucketed_allreduce-fp32-8x64-2gpus .* PASS .*"])
    doc = json.loads((chapter.path / "expectations" / "2x_cpu" / "collectives.json").read_text())
    entry = doc["entries"]["bucketed_allreduce-fp32-8x64-2gpus"]
    assert entry["speedup"] > 1.2 and entry["provenance"]["ranks"] == 2, entry
    assert entry["provenance"]["process_group"] == "gloo", entry


def test_a_case_timed_on_two_world_sizes_gets_a_scaling_table_after_the_summary(
        chapter: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOY_WORLDS", "2,3")
    result = chapter.runpytest_subprocess("-m", "perf", "--aiperf-backend=cpu", "--aiperf-budget=0.3",
                                          "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.re_match_lines([r"bucketed_allreduce-fp32-8x64-3gpus .* PASS .*",
                                  r"scaling \(distributed cases; slowest rank per round\)",
                                  r"case +ranks .* optimized vs 2 ranks +baseline vs 2 ranks",
                                  r"bucketed_allreduce-fp32-8x64 +2 .* 1\.00x +1\.00x",
                                  r"bucketed_allreduce-fp32-8x64 +3 .*"])


def test_a_wrong_collective_fails_its_case_naming_the_rank(chapter: pytest.Pytester,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOY_WRONG", "1")
    result = chapter.runpytest_subprocess("-m", "perf", "--aiperf-backend=cpu", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines([r".*DistributedError: bucketed_allreduce-fp32-8x64-2gpus on 2 ranks: rank \d failed.*"])
    result.stdout.re_match_lines([r".*optimized disagrees with the float64 reference.*"])


def test_without_a_gpu_a_distributed_case_is_verified_on_gloo_ranks_and_its_timing_skipped(
        chapter: pytest.Pytester) -> None:
    result = chapter.runpytest_subprocess("-m", "perf", "-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=1)
    result.stdout.re_match_lines([r".*timing skipped: no CUDA device. Correctness verified on 2 gloo ranks.*"])


def test_under_xdist_without_a_gpu_a_distributed_case_is_still_verified_on_gloo_ranks(
        chapter: pytest.Pytester) -> None:
    result = chapter.runpytest_subprocess("-m", "perf", "-n", "1", "-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=1)
    result.stdout.re_match_lines([r".*timing skipped: no CUDA device. Correctness verified on 2 gloo ranks.*"])


def test_multi_gpu_cases_carry_the_multigpu_marker_so_a_parallel_run_can_leave_them_out(
        chapter: pytest.Pytester) -> None:
    left_out = chapter.runpytest_subprocess("-m", "perf and not multigpu", "--co", "-q", "-p", "no:cacheprovider")
    left_out.stdout.re_match_lines([r".*no tests collected \(1 deselected\).*"])
    chosen = chapter.runpytest_subprocess("-m", "multigpu", "--co", "-q", "-p", "no:cacheprovider")
    chosen.stdout.re_match_lines([r".*bucketed_allreduce-fp32-8x64-2gpus.*"])


SPLIT_SERVING = '''
"""A toy two-rank server: both ranks decode their own half vs rank 0 emitting first tokens and rank 1 the rest."""
import os
import time

import pytest
import torch
import torch.distributed as dist

from pytest_aiperf import Case
from pytest_aiperf.latency import Timeline


def inputs(shape, dtype, seed, device):
    requests, new_tokens = shape
    return (torch.arange(requests * new_tokens).reshape(requests, new_tokens) % 5,)


def serve(tokens, mine, step_s, first_only=None):
    timeline, start = Timeline(), time.perf_counter()
    for _ in range(tokens.shape[0]):
        timeline.add(start)
    for position in range(tokens.shape[1]):
        if first_only is not None and first_only != (position == 0):
            continue
        time.sleep(step_s)
        for request in mine:
            timeline.tokens(request)
    return tokens.clone(), timeline


def colocated(tokens):
    rank = dist.get_rank()
    return serve(tokens, range(rank, tokens.shape[0], 2), float(os.environ.get("TOY_COLOCATED_S", "0.004")))


def disaggregated(tokens):
    return serve(tokens, range(tokens.shape[0]), 0.001, first_only=dist.get_rank() == 0)


CASES = [Case(name="split_serving", baseline=colocated, optimized=disaggregated, inputs=inputs, goal="latency",
              metric="tpot_p50", world_sizes=(2,), check_shapes=[(2, 3)], time_shapes=[(4, 6)], min_speedup=2.0)]


@pytest.mark.perf_pair(*CASES)
def test_optimized_arm_beats_baseline(pair, aiperf):
    aiperf.run(pair)
'''


def test_a_distributed_latency_case_is_gated_on_the_metric_of_the_ranks_merged_timelines(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_split=textwrap.dedent(SPLIT_SERVING))
    result = pytester.runpytest_subprocess("-m", "perf", "--aiperf-backend=cpu", "--aiperf-budget=1",
                                           "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.re_match_lines([r"split_serving-fp32-4x6-2gpus .* PASS .*",
                                  r"split_serving-fp32-4x6-2gpus: ttft_p50 \S+ ms -> \S+ ms; .*"
                                  r"tpot_p50 \S+ ms -> \S+ [mu]s; .*tokens/s \S+ -> \S+"])
