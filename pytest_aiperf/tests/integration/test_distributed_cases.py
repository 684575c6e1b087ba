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


def test_a_distributed_case_is_timed_on_its_ranks_and_recorded_under_their_count(chapter: pytest.Pytester) -> None:
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


def test_under_xdist_a_distributed_case_is_skipped_with_how_to_run_it(chapter: pytest.Pytester) -> None:
    result = chapter.runpytest_subprocess("-m", "perf", "-n", "1", "-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=1)
    result.stdout.re_match_lines([r".*uses 2 GPUs, which an xdist worker \(one GPU\) cannot: run it without xdist.*"])


def test_multi_gpu_cases_carry_the_multigpu_marker_so_a_parallel_run_can_leave_them_out(
        chapter: pytest.Pytester) -> None:
    left_out = chapter.runpytest_subprocess("-m", "perf and not multigpu", "--co", "-q", "-p", "no:cacheprovider")
    left_out.stdout.re_match_lines([r".*no tests collected \(1 deselected\).*"])
    chosen = chapter.runpytest_subprocess("-m", "multigpu", "--co", "-q", "-p", "no:cacheprovider")
    chosen.stdout.re_match_lines([r".*bucketed_allreduce-fp32-8x64-2gpus.*"])
