"""Ways around the gate, each closed: bad option values, the host clock filed under a GPU's key, a CUDA run without a
GPU, a recorded loss, a partial run that calls live entries stale, and the plugin missing or crashing a README
command."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(("option", "complaint"), [
    ("--aiperf-budget=0", "positive finite number"),
    ("--aiperf-budget=-2", "positive finite number"),
    ("--aiperf-budget=nan", "positive finite number"),
    ("--aiperf-budget=inf", "positive finite number"),
    ("--aiperf-timeout=-1", "0 (no limit) or a positive"),
    ("--aiperf-timeout=nan", "0 (no limit) or a positive"),
    ("--aiperf-hardware=../h100", "cannot name an expectations folder"),
    ("--aiperf-hardware=a/b", "cannot name an expectations folder"),
    ("--aiperf-hardware=", "cannot name an expectations folder"),
    ("--aiperf-hardware=" + "h" * 65, "cannot name an expectations folder"),
])
def test_an_option_value_that_cannot_work_is_a_usage_error_when_parsed(run_toy, option, complaint):
    result = run_toy(option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    assert complaint in result.stderr.str()


def test_the_host_clock_cannot_be_filed_under_a_gpus_key(run_toy, chapter):
    result = run_toy("--aiperf-hardware=h100", "--update-expectations=add")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.re_match_lines([r".*--aiperf-backend=cpu times on the host clock, but --aiperf-hardware=h100.*"])
    assert not (chapter.path / "expectations/h100").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a CUDA device")
@pytest.mark.parametrize("strict", [[], ["--aiperf-strict"]])
def test_asking_for_cuda_timing_without_a_gpu_fails_instead_of_skipping_everything(chapter, strict):
    result = chapter.runpytest("--aiperf-backend=cuda", "-p", "no:cacheprovider", *strict)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.re_match_lines([r".*--aiperf-backend=cuda, but no CUDA GPU is visible.*"])


def test_a_recorded_loss_fails_unless_the_case_declares_it(run_toy, chapter, monkeypatch):
    path = chapter.path / "expectations/cpu/ch90_toy.json"
    run_toy("--update-expectations").assert_outcomes(passed=1)
    doc = json.loads(path.read_text())
    entry = doc["entries"]["double-fp32-1024"]
    entry.update(speedup=0.5, ci=[0.49, 0.51], noise_margin=0.3, recordings=[])
    entry["baseline"]["median_ms"], entry["optimized"]["median_ms"] = 1.0, 2.0
    path.write_text(json.dumps(doc))
    monkeypatch.setenv("AIPERF_TOY_BASE_MS", "1")
    monkeypatch.setenv("AIPERF_TOY_OPT_MS", "2")
    undeclared = run_toy()
    undeclared.assert_outcomes(failed=1)
    undeclared.stdout.re_match_lines([r".*REGRESSED: .*below the min_speedup floor 1\.50x, above the cpu band's low "
                                      r"edge \(recorded 0\.50x.*declares no known_loss.*"])
    test = chapter.path / "suites/ch90/test_toy.py"
    test.write_text(test.read_text().replace("min_speedup=1.5)", "min_speedup=1.5, known_loss='a toy that loses')"))
    declared = run_toy()
    declared.assert_outcomes(passed=1)
    declared.stdout.re_match_lines([r"1 case below the floor, 1 with a declared known loss",
                                    r".*double-fp32-1024: 0\.\d+x is below .* declared known loss \(a toy that loses\)"])


@pytest.mark.parametrize("select", [["suites/ch90/test_toy.py::test_optimized_arm_beats_baseline[double-fp32-1024]"],
                                    ["-k", "1024"], ["--lf"]])
def test_a_partial_run_never_calls_a_live_entry_stale(run_toy, chapter, monkeypatch, select):
    toy = chapter.path / "suites/ch90/test_toy.py"
    toy.write_text(toy.read_text().replace("time_shapes=[(1024,)]", "time_shapes=[(1024,), (2048,)]").replace(
        'def optimized_double(x):\n', 'def optimized_double(x):\n    delay("AIPERF_TOY_SLOW_%d_MS" % x.numel(), "0")\n'))
    run_toy("--update-expectations", cache=True).assert_outcomes(passed=2)
    entries = json.loads((chapter.path / "expectations/cpu/ch90_toy.json").read_text())["entries"]
    assert set(entries) == {"double-fp32-1024", "double-fp32-2048"}
    monkeypatch.setenv("AIPERF_TOY_SLOW_2048_MS", "6")
    run_toy(cache=True).assert_outcomes(passed=1, failed=1)
    monkeypatch.delenv("AIPERF_TOY_SLOW_2048_MS")
    result = run_toy(*select, cache=True)
    result.assert_outcomes(passed=1)
    assert "no longer exists" not in result.stdout.str()


def test_without_the_plugin_the_repository_says_what_is_missing(pytester):
    pytester.makeconftest((REPO / "conftest.py").read_text())
    pytester.makepyfile(test_x="def test_x():\n    assert True\n")
    result = pytester.runpytest_subprocess("-p", "no:aiperf")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.re_match_lines([r".*need the pytest-aiperf plugin, which is not loaded.*-p no:aiperf.*"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a CUDA device")
def test_the_readme_benchmark_json_command_runs_on_a_machine_without_timing(chapter, tmp_path):
    warnings = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["filterwarnings"]
    chapter.makeini("[pytest]\nfilterwarnings =\n" + "".join(f"    {w}\n" for w in warnings))
    out = tmp_path / "ch90.json"
    result = chapter.runpytest("-m", "perf", f"--benchmark-json={out}", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str() + result.stderr.str()
    result.assert_outcomes(skipped=1)
