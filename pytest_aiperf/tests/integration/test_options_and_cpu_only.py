"""The command line, and what a machine without a GPU still checks."""

from __future__ import annotations

import textwrap

import pytest
import torch

WRONG_ON_CPU = '''
import pytest
import torch
from pytest_aiperf import Case

def inputs(shape, dtype, seed, device):
    return (torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device),)

CASES = [Case(name="negate", baseline=lambda x: -x, optimized=lambda x: 0 * x, inputs=inputs,
              check_shapes=[(13,)], time_shapes=[(4096,)]),
         Case(name="square", baseline=lambda x: x * x, optimized=lambda x: x ** 2, inputs=inputs,
              check_shapes=[(13,)], time_shapes=[(4096,)]),
         Case(name="pinned_copy", baseline=lambda x: x + 1, optimized=lambda x: 1 + x, inputs=inputs,
              check_shapes=[(13,)], time_shapes=[(4096,)], needs_cuda=True)]

@pytest.mark.perf_pair(*CASES)
def test_optimized_arm_beats_baseline(pair, aiperf):
    aiperf.run(pair)

def test_an_unmarked_test_is_not_selected_by_perf():
    assert True
'''


def test_help_lists_the_options_and_their_defaults(pytester):
    result = pytester.runpytest("--help")
    result.stdout.re_match_lines([r".*--update-expectations=\[?all\|new\]?.*", r".*--aiperf-hardware=KEY.*",
                                  r".*--aiperf-strict.*", r".*--aiperf-budget=SECONDS.*", r".*--aiperf-backend.*",
                                  r".*aiperf_budget.*", r".*aiperf_expectations.*"])


def test_markers_are_registered_for_strict_markers(pytester):
    result = pytester.runpytest("--markers")
    result.stdout.re_match_lines([r"@pytest.mark.perf_pair\(\*cases, chapter=None\):.*", r"@pytest.mark.perf:.*"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour of a machine without a CUDA device")
def test_without_a_gpu_cases_are_verified_on_cpu_and_timing_is_skipped_with_a_reason(pytester):
    pytester.makepyfile(test_cpu=textwrap.dedent(WRONG_ON_CPU))
    result = pytester.runpytest("-m", "perf", "-rfs", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, skipped=2, deselected=1)
    result.stdout.re_match_lines([
        r"E +pytest_aiperf.checks.CorrectnessError: optimized disagrees with the float64 reference.*",
        r"SKIPPED .*timing skipped: no CUDA device. Correctness verified on cpu: 3 seeds x 1 shapes.*",
        r"SKIPPED .*pinned_copy-fp32-4096 needs a CUDA device.*"])


def test_ids_read_like_descriptions(pytester):
    pytester.makepyfile(test_cpu=textwrap.dedent(WRONG_ON_CPU))
    result = pytester.runpytest("--collect-only", "-q", "-m", "perf")
    result.stdout.re_match_lines([r".*\[negate-fp32-4096\]", r".*\[square-fp32-4096\]", r".*\[pinned_copy-fp32-4096\]"])
