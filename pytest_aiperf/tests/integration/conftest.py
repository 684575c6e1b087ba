"""Tiny chapters for end-to-end runs of the plugin on the CPU, timed by the host clock.

Arm costs come from ``time.sleep`` inside the variants, set through environment variables read at call time,
so one module can be made faster, slower or equal between runs without editing it.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import torch  # noqa: F401  (loaded once here: pytester's in-process runs would otherwise re-import it, which crashes)

CHAPTER = '''
"""A toy chapter: doubling a vector, the baseline with an extra host delay."""
import os
import time

import pytest
import torch

from pytest_aiperf import Case, Work


def delay(name, default):
    ms = float(os.environ.get(name, default))
    if ms:
        time.sleep(ms / 1e3)


def inputs(shape, dtype, seed, device):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float32).to(device),)


def baseline_double(x):
    delay("AIPERF_TOY_BASE_MS", "6")
    return x * 2


def optimized_double(x):
    delay("AIPERF_TOY_OPT_MS", "1.5")
    return x + x


CASES = [Case(name="double", baseline=baseline_double, optimized=optimized_double, inputs=inputs,
              check_shapes=[(7,), (33,)], time_shapes=[(1024,)], work=lambda s, d: Work(bytes=8 * s[0]),
              min_speedup=1.5)]


@pytest.mark.perf_pair(*CASES)
def test_optimized_arm_beats_baseline(pair, aiperf):
    aiperf.run(pair)
'''

FAST = ["--aiperf-backend=cpu", "--aiperf-budget=0.8", "-p", "no:randomly"]
NO_CACHE = ["-p", "no:cacheprovider"]


@pytest.fixture(autouse=True)
def plugin_under_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """Subprocess runs import the plugin of this checkout, not the installed one: an editable install may point at
    another worktree, whose code the subprocess would otherwise test."""
    checkout = str(Path(__file__).resolve().parents[3])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [checkout, os.environ.get("PYTHONPATH")])))


@pytest.fixture
def chapter(pytester: pytest.Pytester) -> pytest.Pytester:
    """A rootdir holding ``suites/ch90/test_toy.py`` (chapter ``ch90_toy``) and an empty ``expectations/``."""
    pytester.makeini("[pytest]\nfilterwarnings =\n    error\n    default::pytest_aiperf.verdict.AiperfWarning\n"
                      "    ignore:Benchmarks are automatically disabled because xdist:"
                      "pytest_benchmark.logger.PytestBenchmarkWarning\n")
    suite = pytester.mkdir("suites") / "ch90"
    suite.mkdir()
    (suite / "test_toy.py").write_text(textwrap.dedent(CHAPTER))
    pytester.mkdir("expectations")
    return pytester


@pytest.fixture
def run_toy(chapter: pytest.Pytester):
    """Run the toy chapter with the CPU clock and a short budget: ``run_toy("-k", "double", subprocess=True)``;
    pytest's cache is off unless ``cache=True``."""

    def run(*args: str, subprocess: bool = False, cache: bool = False) -> pytest.RunResult:
        full = [*FAST, *([] if cache else NO_CACHE), *args]
        return chapter.runpytest_subprocess(*full) if subprocess else chapter.runpytest(*full)

    return run
