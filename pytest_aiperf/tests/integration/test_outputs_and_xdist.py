"""Outputs that leave the run: pytest-benchmark JSON, JUnit properties, and completeness under xdist."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SECOND_CASE = '''
CASES.append(Case(name="triple", baseline=lambda x: (delay("AIPERF_TOY_BASE_MS", "3"), x * 3)[1],
                  optimized=lambda x: x + x + x, inputs=inputs, check_shapes=[(9,)], time_shapes=[(256,), (512,)]))
'''


@pytest.fixture
def two_cases(chapter):
    path = chapter.path / "suites/ch90/test_toy.py"
    text = path.read_text()
    anchor = "\n\n@pytest.mark.perf_pair"
    path.write_text(text.replace(anchor, SECOND_CASE + anchor))
    return chapter


def test_benchmark_json_holds_both_arms_of_each_case_and_the_gpu_facts(run_toy, chapter):
    # a subprocess: pytest-benchmark leaves the --benchmark-json file open, which pytest >= 9.1 reports in-process
    result = run_toy("--benchmark-json=out.json", subprocess=True)
    result.assert_outcomes(passed=1)
    data = json.loads((chapter.path / "out.json").read_text())
    names = sorted(b["name"] for b in data["benchmarks"])
    assert names == ["test_optimized_arm_beats_baseline[double-fp32-1024-baseline]",
                     "test_optimized_arm_beats_baseline[double-fp32-1024-optimized]"]
    base, opt = sorted(data["benchmarks"], key=lambda b: b["name"])
    assert base["group"] == opt["group"] == "double-fp32-1024"
    assert base["stats"]["median"] > opt["stats"]["median"] > 0
    assert base["extra_info"]["speedup"] > 1.5 and "gpu" in data["machine_info"]
    compare = subprocess.run([sys.executable, "-m", "pytest_benchmark.cli", "compare", "out.json", "--group-by=group"],
                             cwd=chapter.path, capture_output=True, text=True)
    assert compare.returncode == 0, compare.stderr


def test_junit_xml_carries_the_speedup_and_verdict_as_properties(run_toy, chapter):
    run_toy("--junitxml=junit.xml").assert_outcomes(passed=1)
    xml = (chapter.path / "junit.xml").read_text()
    assert 'name="aiperf.speedup"' in xml and 'name="aiperf.verdict" value="PASS"' in xml


def test_under_xdist_the_summary_json_and_expectations_are_complete(run_toy, two_cases):
    """Completeness, not precision: sleeps timed on a loaded 2-core CI host move by more than 3% between runs, so
    the recorded margin is widened to keep the gated rerun about merging, not noise."""
    result = run_toy("-n", "2", "--update-expectations", "--benchmark-json=out.json", "-o", "aiperf_min_margin=0.5",
                     subprocess=True)
    result.assert_outcomes(passed=3)
    data = json.loads((two_cases.path / "out.json").read_text())
    assert len(data["benchmarks"]) == 6
    entries = json.loads((two_cases.path / "expectations/cpu/ch90_toy.json").read_text())["entries"]
    assert sorted(entries) == ["double-fp32-1024", "triple-fp32-256", "triple-fp32-512"]
    result.stdout.re_match_lines([r".*triple-fp32-256 .*", r".*triple-fp32-512 .*"])
    gated = run_toy("-n", "2", subprocess=True)
    gated.assert_outcomes(passed=3)
