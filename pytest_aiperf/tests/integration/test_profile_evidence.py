"""``--aiperf-profile``: a regression's failure names the operator that got slower, from a torch.profiler capture on
the CPU compared with the profile recorded with the expectation; Chrome traces are written for each arm."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch._inductor.config  # noqa: F401  (the profiler imports it: loaded once here, as in-process runs would
# otherwise import triton again, which aborts)

# The toy's optimized arm multiplies by one once, and 1 + AIPERF_TOY_SLOW_MUL times where that is set: the planted
# slow op, about 3 us a call on the host.
SLOW_MUL = '''    y = x + x
    for _ in range(1 + int(os.environ.get("AIPERF_TOY_SLOW_MUL", "0"))):
        y = torch.mul(y, ONE)
    return y
'''

RECORDS = '''
import json


def pytest_runtest_logreport(report):
    record = getattr(report, "aiperf", None)
    if record is not None:
        with open("records.jsonl", "a") as out:
            out.write(json.dumps(record) + "\\n")
'''


@pytest.fixture
def planted(chapter: pytest.Pytester) -> pytest.Pytester:
    """The toy chapter with the planted multiply, and a conftest that keeps each record in ``records.jsonl``."""
    path = chapter.path / "suites/ch90/test_toy.py"
    text = path.read_text().replace("    return x + x\n", SLOW_MUL)
    path.write_text(text.replace("\ndef delay(", "\nONE = torch.ones(())\n\n\ndef delay("))
    (chapter.path / "conftest.py").write_text(RECORDS)
    return chapter


def last_record(chapter: pytest.Pytester) -> dict:
    return json.loads((chapter.path / "records.jsonl").read_text().splitlines()[-1])


def test_a_planted_slow_op_is_named_in_the_failure_with_its_time_then_and_now(run_toy, planted, monkeypatch):
    run_toy("--update-expectations", "--aiperf-profile=regressed", "-o", "aiperf_min_margin=0.5").assert_outcomes(
        passed=1)
    recorded = last_record(planted)
    assert sorted(recorded["profile"]) == ["baseline", "optimized"]
    assert {"aten::add", "aten::mul"} <= set(recorded["profile"]["optimized"])
    trace = Path(recorded["traces"]["optimized"])
    assert trace == planted.path / ".aiperf/traces/double-fp32-1024-optimized.json"
    assert any(event.get("name") == "aten::mul" for event in json.loads(trace.read_text())["traceEvents"])
    expectation = planted.path / "expectations/cpu/ch90_toy.json"
    doc = json.loads(expectation.read_text())
    doc["entries"]["double-fp32-1024"].setdefault("profile", recorded["profile"])  # as the expectations writer does
    expectation.write_text(json.dumps(doc))

    monkeypatch.setenv("AIPERF_TOY_SLOW_MUL", "1500")
    result = run_toy("--aiperf-profile=regressed")
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines([r"REGRESSED: .*; kernels: since the recorded profile \(baseline \S+ \S+ -> \S+ \S+, "
                                  r"optimized \S+ us -> \S+ ms of kernel time per call\), the optimized arm's "
                                  r"`aten::mul` went from [0-9.]+ us to [0-9.]+ ms.*"])
    assert len(last_record(planted)["profile"]["optimized"]) == len(recorded["profile"]["optimized"])


def test_a_passing_case_is_not_profiled_in_mode_regressed(run_toy, planted):
    run_toy("--aiperf-profile=regressed").assert_outcomes(passed=1)
    assert "profile" not in last_record(planted) and not (planted.path / ".aiperf").exists()


def test_mode_all_profiles_every_case_and_writes_its_traces_beside_the_html_report(run_toy, planted):
    run_toy("--aiperf-profile=all", "--aiperf-html=out/report.html").assert_outcomes(passed=1)
    traces = sorted(p.name for p in (planted.path / "out/report-traces").iterdir())
    assert traces == ["double-fp32-1024-baseline.json", "double-fp32-1024-optimized.json"]
    html = (planted.path / "out/report.html").read_text()
    assert '<a href="report-traces/double-fp32-1024-optimized.json">optimized trace</a>' in html


def test_help_lists_the_report_options(pytester):
    pytester.runpytest("--help").stdout.re_match_lines([r".*--aiperf-html=PATH.*",
                                                        r".*--aiperf-profile=\{off,regressed,all\}.*"])
