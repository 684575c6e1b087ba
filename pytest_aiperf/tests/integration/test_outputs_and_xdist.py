"""Outputs that leave the run: pytest-benchmark JSON, JUnit properties, and completeness under xdist."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SECOND_CASE = '''
CASES.append(Case(name="triple", baseline=lambda x: (delay("AIPERF_TOY_BASE_MS", "6"), x * 3)[1],
                  optimized=lambda x: (delay("AIPERF_TOY_OPT_MS", "1.5"), x + x + x)[1], inputs=inputs, check_shapes=[(9,)], time_shapes=[(256,), (512,)]))
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


ORDER_PROBE = '''
def pytest_collection_finish(session):
    worker = getattr(session.config, "workerinput", None)
    if worker:
        out = session.config.rootpath / f"order-{worker['workerid']}.txt"
        out.write_text("\\n".join(item.nodeid.rsplit("[", 1)[1].rstrip("]") for item in session.items))
'''
NODE = "suites/ch90/test_toy.py::test_optimized_arm_beats_baseline[{}]"


def test_under_xdist_the_longest_case_of_the_last_run_goes_out_first_and_the_run_updates_the_durations(
        run_toy, two_cases):
    two_cases.makeconftest(ORDER_PROBE)
    cache = two_cases.path / ".pytest_cache/v/aiperf/durations"
    cache.parent.mkdir(parents=True)
    cache.write_text(json.dumps({NODE.format("triple-fp32-512"): 100.0, NODE.format("double-fp32-1024"): 1.0}))
    result = run_toy("-n", "2", subprocess=True, cache=True)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["aiperf: xdist hands tests out longest first, by the durations of 2 tests*"])
    orders = {p.name: p.read_text().split() for p in two_cases.path.glob("order-gw*.txt")}
    expected = ["triple-fp32-256", "triple-fp32-512", "double-fp32-1024"]  # never timed first, then longest
    assert orders == {"order-gw0.txt": expected, "order-gw1.txt": expected}, orders
    durations = json.loads(cache.read_text())
    assert sorted(durations) == sorted(NODE.format(case) for case in expected), durations
    assert 0 < durations[NODE.format("triple-fp32-512")] < 100, "this run's duration replaces the last run's"


@pytest.mark.parametrize("args, cached, why", [(["--aiperf-order=collected"], True, None),
                                               ([], False, "*as collected: pytest's cache is off*")])
def test_under_xdist_tests_go_out_as_collected_when_asked_or_without_a_cache(run_toy, two_cases, args, cached, why):
    two_cases.makeconftest(ORDER_PROBE)
    cache = two_cases.path / ".pytest_cache/v/aiperf/durations"
    cache.parent.mkdir(parents=True)
    cache.write_text(json.dumps({NODE.format("triple-fp32-512"): 100.0}))
    result = run_toy("-n", "2", *args, subprocess=True, cache=cached)
    result.assert_outcomes(passed=3)
    if why:
        result.stdout.fnmatch_lines([why])
    orders = {p.read_text() for p in two_cases.path.glob("order-gw*.txt")}
    assert orders == {"double-fp32-1024\ntriple-fp32-256\ntriple-fp32-512"}, orders
