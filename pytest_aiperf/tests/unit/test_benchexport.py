"""The pytest-benchmark export: Metadata entries, JSON, save/compare/compare-fail, the CLI, and JUnit properties."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import pytest_aiperf
from pytest_aiperf import benchexport
from pytest_aiperf.record import arm

REPO_ROOT = Path(pytest_aiperf.__file__).resolve().parents[1]
KEY = "fused_add-fp32-1048576"


def make_record(**overrides: Any) -> dict[str, Any]:
    """A realistic record: baseline median 2.2 ms, optimized median 0.7 ms (5 interleaved rounds), speedup 3.14x.

    Top-level keys are replaced by ``overrides``.
    """
    record: dict[str, Any] = {
        "key": KEY,
        "chapter": "ch01_basics",
        "nodeid": f"test_pairs.py::test_pair[{KEY}]",
        "func": "test_pair",
        "module": "test_pairs.py",
        "hardware": "h100",
        "device": "cuda",
        "backend": "cuda-events",
        "goal": "speed",
        "cache": "cold",
        "dtype": "fp32",
        "shape": [1048576],
        "min_speedup": 1.2,
        "work": {"bytes": 1.2582912e7, "flops": 1048576.0, "items": 0.0, "item_name": ""},
        "baseline": arm([2.0, 2.3, 2.2, 2.4, 2.1], median_ms=2.2, q1_ms=2.1, q3_ms=2.3, wall_median_ms=2.25,
                        energy_mj=310.0),
        "optimized": arm([0.5, 0.8, 0.7, 0.9, 0.6], median_ms=0.7, q1_ms=0.6, q3_ms=0.8, wall_median_ms=0.75,
                         energy_mj=98.0),
        "speedup": 3.142857,
        "ci": [2.9, 3.4],
        "confidence": 0.95,
        "rounds": 5,
        "noise_margin": 0.03,
        "expected": {"speedup": 3.1, "noise_margin": 0.04, "baseline_ms": 2.2, "optimized_ms": 0.7},
        "gate": {"low": 2.976, "high": 3.224, "source": "expectation"},
        "verdict": "PASS",
        "reason": "speedup 3.14x [2.90, 3.40] is within the h100 band 2.98x..3.22x",
        "remeasured": False,
        "telemetry": {"sm_clock_mhz": [1755, 1980], "mem_clock_mhz": [2619, 2619], "temp_c": [41, 47],
                      "power_w": [120.0, 610.0], "throttle": [], "gpu_uuid": "GPU-1234"},
        "ceilings": {"copy_gbps": 3000.0, "matmul_tflops": {"fp32": 60.0, "bf16": 900.0}},
        "correctness": {"seeds": [1, 2, 3], "shapes": [[1024]], "err_baseline": 0.0, "err_optimized": 0.0,
                        "bound": 1e-6, "rule": "fp32 rtol"},
        "provenance": {"gpu": "NVIDIA H100 80GB HBM3", "sm_count": 132},
    }
    record.update(copy.deepcopy(overrides))
    return record


def fake_config(session: Any, **options: Any) -> SimpleNamespace:
    """A config with a pytest-benchmark session and the options ``export`` reads (unknown ones raise like pytest)."""
    def getoption(name: str) -> Any:
        if name not in options:
            raise ValueError(f"no option named {name!r}")
        return options[name]

    return SimpleNamespace(_benchmarksession=session, getoption=getoption)


def enabled_config() -> SimpleNamespace:
    return fake_config(SimpleNamespace(benchmarks=[]), benchmark_disable=False, benchmark_enable=False,
                       benchmark_json="out.json")


def test_installed_pytest_benchmark_has_the_expected_private_api() -> None:
    assert benchexport.supported()


def test_export_appends_one_entry_per_arm_with_names_group_params_and_seconds() -> None:
    config = enabled_config()
    assert benchexport.export(config, make_record())
    baseline, optimized = config._benchmarksession.benchmarks
    assert baseline.name == f"test_pair[{KEY}-baseline]"
    assert optimized.fullname == f"test_pairs.py::test_pair[{KEY}-optimized]"
    assert baseline.group == optimized.group == KEY
    assert optimized.params == {"case": KEY, "variant": "optimized"}
    assert optimized.param == f"{KEY}-optimized"
    assert baseline.stats.median == pytest.approx(0.0022)
    assert optimized.stats.median == pytest.approx(0.0007)
    assert optimized.stats.rounds == 5
    entry = optimized.as_dict()
    assert entry["options"]["timer"] == "cuda_event"
    assert entry["extra_info"]["energy_mj"] == 98.0
    assert entry["stats"]["data"] == pytest.approx([0.0005, 0.0008, 0.0007, 0.0009, 0.0006])
    json.dumps(entry, allow_nan=False)


def test_extra_info_holds_json_native_scalars_only() -> None:
    info = benchexport.extra_info(make_record(expected=None, telemetry=None), "baseline")
    assert info["speedup"] == 3.142857 and info["ci_lo"] == 2.9 and info["ci_hi"] == 3.4
    assert info["verdict"] == "PASS" and info["hardware"] == "h100" and info["energy_mj"] == 310.0
    assert info["expected_speedup"] is None and info["sm_clock_mhz_min"] is None and info["gpu_uuid"] is None
    assert all(value is None or isinstance(value, (str, int, float, bool)) for value in info.values())


def test_each_arm_carries_its_place_on_the_roofline_for_a_chart() -> None:
    record = make_record()
    base, opt = (benchexport.extra_info(record, arm) for arm in ("baseline", "optimized"))
    assert opt["intensity_flop_per_byte"] == pytest.approx(1048576.0 / 1.2582912e7)
    assert opt["achieved_gbps"] == pytest.approx(1.2582912e7 / 0.7e-3 / 1e9)
    assert base["achieved_gbps"] == pytest.approx(1.2582912e7 / 2.2e-3 / 1e9)
    assert opt["achieved_tflops"] == pytest.approx(1048576.0 / 0.7e-3 / 1e12)
    assert (opt["ceiling_gbps"], opt["ceiling_tflops"], opt["ceiling_precision"]) == (3000.0, 60.0, "fp32")


def test_an_fp8_case_is_charted_against_the_fp8_roof_and_a_case_without_flops_has_no_intensity() -> None:
    fp8 = make_record(dtype="fp8e4m3", ceilings={"copy_gbps": 3000.0,
                                                 "matmul_tflops": {"fp32": 60.0, "bf16": 900.0, "fp8": 1500.0}})
    assert benchexport.extra_info(fp8, "optimized")["ceiling_tflops"] == 1500.0
    copy_only = benchexport.extra_info(make_record(work={"bytes": 1e6, "flops": 0.0}, ceilings=None), "optimized")
    assert copy_only["intensity_flop_per_byte"] is None and copy_only["achieved_tflops"] is None
    assert copy_only["ceiling_gbps"] is None and copy_only["achieved_gbps"] == pytest.approx(1e6 / 0.7e-3 / 1e9)


def test_cpu_clock_records_are_labelled_with_the_cpu_timer() -> None:
    config = enabled_config()
    benchexport.export(config, make_record(backend="cpu-clock", device="cpu", hardware="cpu"))
    assert config._benchmarksession.benchmarks[0].options["timer"] == "cpu_clock"


def test_export_does_nothing_under_benchmark_disable() -> None:
    config = fake_config(SimpleNamespace(benchmarks=[]), benchmark_disable=True, benchmark_enable=False)
    assert not benchexport.export(config, make_record())
    assert config._benchmarksession.benchmarks == []


def test_nothing_is_exported_unless_a_benchmark_output_is_requested() -> None:
    config = fake_config(SimpleNamespace(benchmarks=[]), benchmark_disable=False, benchmark_enable=False)
    assert benchexport.export(config, make_record()) is False
    assert config._benchmarksession.benchmarks == []


def test_benchmark_enable_overrides_benchmark_disable() -> None:
    config = fake_config(SimpleNamespace(benchmarks=[]), benchmark_disable=True, benchmark_enable=True,
                         benchmark_json="out.json")
    assert benchexport.export(config, make_record())


def test_export_does_nothing_without_a_benchmark_session() -> None:
    assert not benchexport.export(SimpleNamespace(), make_record())


def test_export_skips_a_pair_with_an_arm_without_samples() -> None:
    config = enabled_config()
    record = make_record()
    record["optimized"]["samples_ms"] = []
    assert not benchexport.export(config, record)
    assert config._benchmarksession.benchmarks == []


def test_a_changed_metadata_signature_disables_the_export(monkeypatch: pytest.MonkeyPatch) -> None:
    import pytest_benchmark.stats

    class ChangedMetadata:
        def __init__(self, fixture: Any, iterations: int, options: dict[str, Any], precision: float) -> None:
            raise AssertionError("must not be constructed when the signature changed")

    monkeypatch.setattr(pytest_benchmark.stats, "Metadata", ChangedMetadata)
    benchexport.supported.cache_clear()
    try:
        config = enabled_config()
        assert not benchexport.supported()
        assert not benchexport.export(config, make_record())
        assert config._benchmarksession.benchmarks == []
    finally:
        monkeypatch.undo()
        benchexport.supported.cache_clear()


def test_junit_properties_are_small_scalars() -> None:
    assert benchexport.junit_properties(make_record()) == [
        ("aiperf.speedup", 3.142857), ("aiperf.ci_lo", 2.9), ("aiperf.ci_hi", 3.4), ("aiperf.verdict", "PASS"),
        ("aiperf.reason", "speedup 3.14x [2.90, 3.40] is within the h100 band 2.98x..3.22x"), ("aiperf.expected", 3.1), ("aiperf.hardware", "h100"), ("aiperf.baseline_ms", 2.2),
        ("aiperf.optimized_ms", 0.7),
    ]


def test_junit_properties_leave_out_what_was_not_measured() -> None:
    names = [name for name, _ in benchexport.junit_properties(make_record(expected=None, ci=None))]
    assert names == ["aiperf.speedup", "aiperf.verdict", "aiperf.reason", "aiperf.hardware", "aiperf.baseline_ms",
                     "aiperf.optimized_ms"]


CONFTEST = '''
from pytest_aiperf import benchexport


class Exporter:
    """Exports each record carried on a test report, in the reporting process only."""

    def __init__(self, config):
        self.config = config

    def pytest_runtest_logreport(self, report):
        if report.when != "call":
            return
        for name, record in report.user_properties:
            if name == "aiperf_record":
                assert benchexport.export(self.config, record), "export appended nothing"


def pytest_configure(config):
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(Exporter(config), "aiperf-test-exporter")
'''

TEST_MODULE = '''
import json

RECORD = json.loads({record!r})


def test_pair(request):
    request.node.user_properties.append(("aiperf_record", RECORD))
'''


@pytest.fixture
def bench_dir(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester folder whose subprocess imports this checkout and not the aiperf plugin itself."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    pytester.makeconftest(CONFTEST)
    return pytester


def write_pair(pytester: pytest.Pytester, record: dict[str, Any]) -> None:
    pytester.makepyfile(test_pairs=TEST_MODULE.format(record=json.dumps(record)))


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:aiperf", "-p", "no:cacheprovider", *args)


def test_benchmark_json_holds_both_arms_and_the_compare_cli_reads_it(bench_dir: pytest.Pytester) -> None:
    write_pair(bench_dir, make_record())
    result = run(bench_dir, "--benchmark-json=out.json")
    result.assert_outcomes(passed=1)
    entries = json.loads((bench_dir.path / "out.json").read_text())["benchmarks"]
    assert [e["name"] for e in entries] == [f"test_pair[{KEY}-baseline]", f"test_pair[{KEY}-optimized]"]
    assert [e["fullname"] for e in entries] == [f"test_pairs.py::test_pair[{KEY}-baseline]",
                                                f"test_pairs.py::test_pair[{KEY}-optimized]"]
    assert {e["group"] for e in entries} == {KEY}
    assert [e["params"] for e in entries] == [{"case": KEY, "variant": "baseline"},
                                              {"case": KEY, "variant": "optimized"}]
    assert [e["stats"]["median"] for e in entries] == pytest.approx([0.0022, 0.0007])
    assert entries[1]["extra_info"]["speedup"] == 3.142857
    assert entries[1]["extra_info"]["verdict"] == "PASS"
    assert entries[1]["extra_info"]["gpu_uuid"] == "GPU-1234"
    assert entries[1]["extra_info"]["sm_clock_mhz_max"] == 1980
    cli = subprocess.run([sys.executable, "-m", "pytest_benchmark", "compare", "out.json", "--group-by=group"],
                         cwd=bench_dir.path, capture_output=True, text=True, timeout=120, check=False)
    assert cli.returncode == 0, cli.stderr
    assert f"{KEY}-optimized" in cli.stdout and f"{KEY}-baseline" in cli.stdout


def test_benchmark_disable_writes_no_json(bench_dir: pytest.Pytester) -> None:
    """pytest-benchmark 5.2 opens the ``--benchmark-json`` file at parse time (it must stay empty); 5.3 creates it
    only when there are benchmarks (it must not exist)."""
    bench_dir.makeconftest(CONFTEST.replace('assert benchexport.export(self.config, record), "export appended nothing"',
                                            'assert not benchexport.export(self.config, record)'))
    write_pair(bench_dir, make_record())
    run(bench_dir, "--benchmark-json=out.json", "--benchmark-disable").assert_outcomes(passed=1)
    out = bench_dir.path / "out.json"
    assert not out.exists() or out.read_bytes() == b""


def test_compare_fail_catches_an_optimized_arm_20_percent_slower(bench_dir: pytest.Pytester) -> None:
    write_pair(bench_dir, make_record())
    run(bench_dir, "--benchmark-save=base").assert_outcomes(passed=1)
    slower = make_record()
    slower["optimized"] = arm([1.2 * s for s in slower["optimized"]["samples_ms"]], median_ms=0.84, q1_ms=0.72,
                              q3_ms=0.96, wall_median_ms=0.9)
    write_pair(bench_dir, slower)
    result = run(bench_dir, "--benchmark-compare", "--benchmark-compare-fail=median:5%")
    assert result.ret != 0
    output = result.stdout.str() + result.stderr.str()
    assert "Performance has regressed" in output
    failed = [line.strip() for line in output.splitlines() if "has failed PercentageRegressionCheck" in line]
    assert failed == [f"test_pair[{KEY}-optimized] (0001_base) - Field 'median' has failed PercentageRegressionCheck: "
                      "20.000000000 > 5.000000000"]


def test_unchanged_rerun_passes_compare_fail(bench_dir: pytest.Pytester) -> None:
    write_pair(bench_dir, make_record())
    run(bench_dir, "--benchmark-save=base").assert_outcomes(passed=1)
    result = run(bench_dir, "--benchmark-compare", "--benchmark-compare-fail=median:5%")
    assert result.ret == 0, result.stdout.str()
    assert "Performance has regressed" not in result.stdout.str() + result.stderr.str()


def test_json_is_written_by_the_xdist_controller_although_xdist_disables_pytest_benchmark(
        bench_dir: pytest.Pytester) -> None:
    write_pair(bench_dir, make_record())
    result = run(bench_dir, "-n", "2", "--benchmark-json=out.json",
                 "-W", "ignore::pytest_benchmark.logger.PytestBenchmarkWarning")
    result.assert_outcomes(passed=1)
    entries = json.loads((bench_dir.path / "out.json").read_text())["benchmarks"]
    assert [e["params"]["variant"] for e in entries] == ["baseline", "optimized"]
    assert [e["stats"]["median"] for e in entries] == pytest.approx([0.0022, 0.0007])
