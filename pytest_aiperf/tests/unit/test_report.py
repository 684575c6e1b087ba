"""The terminal report: every cell of the summary table, the failures, the update table, stale entries, the header."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_aiperf import notes, report
from pytest_aiperf.record import arm

GIB = 1024**3


def make_record(**overrides: Any) -> dict[str, Any]:
    """A realistic record of a bandwidth-bound case on an H100 that passed against its recorded expectation.

    Optimized: 0.812 ms moving 2.20052e9 bytes (2710 GB/s, 90.3% of a 3000 GB/s copy ceiling) and doing 4e10 flops
    (49.3 TFLOP/s, 82.1% of a 60 TFLOP/s fp32 matmul ceiling). Top-level keys are replaced by ``overrides``.
    """
    record: dict[str, Any] = {
        "key": "layernorm_fused-fp32-4096x4096",
        "chapter": "ch01_performance_basics",
        "nodeid": "suites/ch01/test_performance_basics.py::test_perf[layernorm_fused-fp32-4096x4096]",
        "func": "test_perf",
        "module": "suites/ch01/test_performance_basics.py",
        "hardware": "h100",
        "device": "cuda",
        "backend": "cuda-events",
        "goal": "speed",
        "cache": "cold",
        "dtype": "fp32",
        "shape": [4096, 4096],
        "min_speedup": 1.2,
        "work": {"bytes": 2.20052e9, "flops": 4.0e10, "items": 0.0, "item_name": ""},
        "baseline": arm([2.60, 2.607, 2.61, 2.62, 2.59], median_ms=2.607, q1_ms=2.60, q3_ms=2.61,
                        wall_median_ms=2.63, energy_mj=310.0),
        "optimized": arm([0.81, 0.812, 0.815, 0.80, 0.82], median_ms=0.812, q1_ms=0.81, q3_ms=0.815,
                         wall_median_ms=0.84, energy_mj=98.0),
        "speedup": 3.2106,
        "ci": [3.18, 3.25],
        "confidence": 0.95,
        "rounds": 5,
        "noise_margin": 0.012,
        "expected": {"speedup": 3.10, "noise_margin": 0.04, "baseline_ms": 2.55, "optimized_ms": 0.80},
        "gate": {"low": 2.976, "high": 3.224, "source": "expectation"},
        "verdict": "PASS",
        "reason": "speedup 3.21x [3.18, 3.25] is within the h100 band 2.98x..3.22x",
        "remeasured": False,
        "telemetry": {"sm_clock_mhz": [1755, 1980], "mem_clock_mhz": [2619, 2619], "temp_c": [41, 47],
                      "power_w": [120.0, 610.0], "throttle": [], "gpu_uuid": "GPU-1234"},
        "ceilings": {"copy_gbps": 3000.0, "matmul_tflops": {"fp32": 60.0, "bf16": 900.0}},
        "correctness": {"seeds": [1, 2, 3], "shapes": [[64, 64]], "err_baseline": 0.0, "err_optimized": 1e-7,
                        "bound": 1e-5, "rule": "fp32 rtol"},
        "provenance": {"gpu": "NVIDIA H100 80GB HBM3", "sm_count": 132, "l2_bytes": 52428800},
    }
    record.update(copy.deepcopy(overrides))
    return record


def floor_record() -> dict[str, Any]:
    """No expectation recorded for this hardware: gated by min_speedup 1.20x; no NVML energy; no ceilings measured."""
    return make_record(
        key="pinned_copy-fp32-1048576", chapter="ch02_memory", expected=None,
        gate={"low": 1.2, "high": None, "source": "floor"}, ceilings=None, speedup=1.874, ci=[1.85, 1.9],
        baseline=arm([1.5], median_ms=1.5, q1_ms=1.5, q3_ms=1.5, wall_median_ms=1.6),
        optimized=arm([0.8], median_ms=0.8004, q1_ms=0.8, q3_ms=0.8, wall_median_ms=0.9),
        work={"bytes": 4.0e9, "flops": 0.0, "items": 0.0, "item_name": ""},
    )


def memory_record() -> dict[str, Any]:
    """Memory goal: the ratio is peak bytes, 4 GiB -> 1.5 GiB = 2.67x."""
    return make_record(
        key="checkpointing-bf16-16x4096", goal="memory", speedup=4 / 1.5, ci=[4 / 1.5, 4 / 1.5],
        baseline=arm([3.0], median_ms=3.0, q1_ms=3.0, q3_ms=3.0, wall_median_ms=3.1, peak_bytes=4 * GIB),
        optimized=arm([4.0], median_ms=4.0, q1_ms=4.0, q3_ms=4.0, wall_median_ms=4.1, peak_bytes=3 * GIB // 2),
    )


def cells(table: str, key: str) -> list[str]:
    """The cells of the row whose first cell is ``key``; columns are separated by two or more spaces."""
    for line in table.splitlines():
        row = re.split(r"\s{2,}", line.strip())
        if row[0] == key:
            return row
    raise AssertionError(f"no row {key!r} in:\n{table}")


def column(table: str, key: str, header: str) -> str:
    return cells(table, key)[report.SUMMARY_HEADERS.index(header)]


def test_summary_row_of_a_passing_case_shows_every_column_hand_computed() -> None:
    table = report.summary_table([make_record()])
    assert cells(table, "layernorm_fused-fp32-4096x4096") == [
        "layernorm_fused-fp32-4096x4096", "2.61 ms", "812 us", "3.21x [3.18, 3.25]", "3.10x +-4%", "PASS",
        "2710 GB/s, 49.3 TFLOP/s", "90%", "310 -> 98 mJ",
    ]
    assert re.split(r"\s{2,}", table.splitlines()[0].strip()) == list(report.SUMMARY_HEADERS)


def test_summary_fits_a_200_column_terminal() -> None:
    table = report.summary_table([make_record(), floor_record(), memory_record()])
    assert max(len(line) for line in table.splitlines()) <= 200


def test_floor_gated_case_shows_the_floor_and_dashes_for_missing_energy_and_ceilings() -> None:
    table = report.summary_table([floor_record()])
    row = cells(table, "pinned_copy-fp32-1048576")
    assert row[1:4] == ["1.5 ms", "800 us", "1.87x [1.85, 1.90]"]
    assert column(table, "pinned_copy-fp32-1048576", "expected") == "floor 1.20x"
    assert column(table, "pinned_copy-fp32-1048576", "achieved") == "4998 GB/s"
    assert column(table, "pinned_copy-fp32-1048576", "% ceil") == "-"
    assert column(table, "pinned_copy-fp32-1048576", "energy/call") == "-"


def test_energy_needs_both_arms() -> None:
    record = make_record()
    record["optimized"]["energy_mj"] = None
    assert column(report.summary_table([record]), record["key"], "energy/call") == "-"


def test_memory_goal_shows_peak_bytes_and_their_ratio() -> None:
    table = report.summary_table([memory_record()])
    assert cells(table, "checkpointing-bf16-16x4096")[1:4] == ["4 GiB", "1.5 GiB", "2.67x [2.67, 2.67]"]


def test_throughput_goal_shows_items_per_second_named_by_the_work_model() -> None:
    record = make_record(goal="throughput", work={"bytes": 0.0, "flops": 0.0, "items": 974.4, "item_name": "samples"})
    table = report.summary_table([record])
    assert column(table, record["key"], "achieved") == "1.2e6 samples/s"
    assert column(table, record["key"], "% ceil") == "-"


def test_remeasured_verdict_gets_a_star() -> None:
    record = make_record(verdict="INCONCLUSIVE", remeasured=True)
    assert column(report.summary_table([record]), record["key"], "verdict") == "INCONCLUSIVE*"


def test_rows_are_sorted_by_chapter_then_key() -> None:
    records = [make_record(key="b-fp32-1", chapter="ch02"), make_record(key="z-fp32-1", chapter="ch01"),
               make_record(key="a-fp32-1", chapter="ch02")]
    keys = [line.split()[0] for line in report.summary_table(records).splitlines()[2:]]
    assert keys == ["z-fp32-1", "a-fp32-1", "b-fp32-1"]


def test_summary_of_nothing_is_empty() -> None:
    assert report.summary_table([]) == ""


def test_summary_rejects_a_record_without_a_key() -> None:
    record = make_record()
    del record["key"]
    with pytest.raises(KeyError, match="key"):
        report.summary_table([record])


@pytest.mark.parametrize(("ms", "text"), [
    (0.812, "812 us"), (1.234, "1.23 ms"), (2100.0, "2.1 s"), (0.0005, "500 ns"), (0.9996, "1 ms"),
    (45.67, "45.7 ms"), (None, "-"), (float("nan"), "-"),
])
def test_format_ms_picks_the_unit_and_keeps_three_significant_digits(ms: float | None, text: str) -> None:
    assert report.format_ms(ms) == text


def test_speedup_without_an_interval_shows_only_the_ratio() -> None:
    assert report.format_speedup(make_record(ci=None)) == "3.21x"
    assert report.format_speedup(make_record(speedup=154.4, ci=[150.2, 160.0])) == "154x [150, 160]"


def test_failures_block_lists_regressed_and_inconclusive_with_their_reasons() -> None:
    records = [
        make_record(key="ok-fp32-1"),
        make_record(key="fast-fp32-1", verdict="IMPROVED", reason="beyond the band"),
        make_record(key="slow-fp32-1", verdict="REGRESSED", reason="speedup 2.41x [2.38, 2.44] is below the band"),
        make_record(key="noisy-fp32-1", verdict="INCONCLUSIVE", reason="the interval straddles the gate; noise"),
    ]
    assert notes.failures_block(records) == (
        "noisy-fp32-1: the interval straddles the gate; noise\n"
        "slow-fp32-1: speedup 2.41x [2.38, 2.44] is below the band"
    )


def test_failures_block_is_empty_when_nothing_failed() -> None:
    assert notes.failures_block([make_record(), make_record(key="x", verdict="IMPROVED")]) == ""


@dataclass(frozen=True)
class FakeChange:
    hardware: str
    chapter: str
    key: str
    status: str
    old: float | None
    new: float | None
    old_margin: float | None = None
    new_margin: float | None = None
    detail: str = ""


def test_update_table_shows_relative_deltas_and_dashes_where_a_side_is_missing() -> None:
    changes = [
        FakeChange("h100", "ch01", "b-fp32-1", "updated", 3.10, 3.2085, 0.04, 0.05),
        FakeChange("h100", "ch01", "a-fp32-1", "new", None, 2.5, None, 0.03),
        FakeChange("h100", "ch02", "c-fp32-1", "updated", 2.0, 1.5, 0.1, 0.1),
        FakeChange("h100", "ch02", "d-fp32-1", "kept", 1.8, 1.8),
        FakeChange("h100", "ch03", "e-fp32-1", "error", 1.5, None),
    ]
    table = report.update_table(changes)
    rows = [re.split(r"\s{2,}", line.strip()) for line in table.splitlines()]
    assert rows[0] == list(report.UPDATE_HEADERS)
    assert rows[2:] == [
        ["h100", "ch01", "a-fp32-1", "new", "-", "2.50x", "-", "+-3%"],
        ["h100", "ch01", "b-fp32-1", "updated", "3.10x", "3.21x", "+3.5%", "+-4% -> +-5%"],
        ["h100", "ch02", "c-fp32-1", "updated", "2.00x", "1.50x", "-25.0%", "+-10% -> +-10%"],
        ["h100", "ch02", "d-fp32-1", "kept", "1.80x", "1.80x", "+0.0%", "-"],
        ["h100", "ch03", "e-fp32-1", "error", "1.50x", "-", "-", "-"],
    ]


def test_update_table_shows_the_margin_change_and_the_detail_of_refused_error_and_repaired_rows() -> None:
    changes = [
        FakeChange("h100", "ch01", "pooled-fp32-1", "refused", 3.0, 2.98, 0.165, 2.21,
                   "timed by cpu-clock on the host, but filed under the GPU key h100"),
        FakeChange("h100", "ch01", "other-fp32-1", "refused", 2.0, 1.9, 0.1, 0.2,
                   "timed by cpu-clock on the host, but filed under the GPU key h100"),
        FakeChange("h100", "ch02", "fixed-fp32-1", "repaired", None, 2.0, None, 0.05,
                   "replaced the malformed entry, which has ci 'narrow'"),
        FakeChange("h100", "ch03", "lost-fp32-1", "error", None, 2.0, None, 0.05,
                   "expectations/h100/ch03.json: not written ([Errno 28] No space left on device)"),
        FakeChange("h100", "ch03", "fine-fp32-1", "new", None, 2.0, None, 0.05),
    ]
    lines = report.update_table(changes).splitlines()
    assert re.split(r"\s{2,}", lines[3].strip())[-2:] == ["-0.7%", "+-16.5% -> +-221%"]
    assert lines[-3:] == [
        "refused h100/ch01 other-fp32-1, pooled-fp32-1: timed by cpu-clock on the host, but filed under the GPU key "
        "h100",
        "repaired h100/ch02 fixed-fp32-1: replaced the malformed entry, which has ci 'narrow'",
        "error h100/ch03 lost-fp32-1: expectations/h100/ch03.json: not written ([Errno 28] No space left on device)",
    ]


def test_update_table_of_no_changes_is_empty() -> None:
    assert report.update_table([]) == ""


def test_stale_block_names_each_file_relative_to_the_rootdir_and_each_key(tmp_path: Path) -> None:
    root = tmp_path / "expectations"
    block = report.stale_block([(root / "2x_h100/ch02_memory.json", "old_copy-fp32-1-2gpus"),
                                (root / "h100/ch01_basics.json", "gone-fp16-8"),
                                (Path("/elsewhere/h100/ch01_basics.json"), "moved-fp16-8")], tmp_path)
    assert block.splitlines()[1:] == [
        "/elsewhere/h100/ch01_basics.json: moved-fp16-8",
        "expectations/2x_h100/ch02_memory.json: old_copy-fp32-1-2gpus",
        "expectations/h100/ch01_basics.json: gone-fp16-8",
    ]
    assert "no longer exists" in block.splitlines()[0]
    assert report.stale_block([(tmp_path / "golden/h100/ch01.json", "x")], str(tmp_path)).splitlines()[1:] == [
        "golden/h100/ch01.json: x"]


def test_stale_block_is_empty_when_nothing_is_stale() -> None:
    assert report.stale_block([], "/repo") == ""


def test_header_line_for_a_known_gpu_has_no_warning() -> None:
    assert report.header_line("h100", "cuda-events", "expectations", True) == (
        "aiperf: hardware h100 (timing: cuda-events), expectations: expectations/h100"
    )
    line = report.header_line("h100", "cuda-events", "expectations/h100", True)
    assert line.endswith("expectations: expectations/h100")


def test_header_line_for_an_unknown_gpu_says_how_to_override() -> None:
    line = report.header_line("nvidia-rtx-9090", "cuda-events", "expectations", False)
    assert line.startswith(
        "aiperf: hardware nvidia-rtx-9090 (timing: cuda-events), expectations: expectations/nvidia-rtx-9090")
    assert "unknown GPU: expectations keyed by its name slug; override with --aiperf-hardware" in line


def test_a_case_below_its_floor_is_named_even_when_its_expectation_passes_it() -> None:
    loss = make_record(key="l2_blocking-fp32-1024x256000", speedup=0.8, min_speedup=1.1, verdict="PASS")
    win = make_record(speedup=3.0, min_speedup=1.5)
    declared = make_record(key="side_stream_ema-bf16-4096", speedup=1.01, min_speedup=1.05, verdict="PASS",
                           known_loss="the EMA hides behind a GEMM that already fills the GPU")
    assert notes.below_floor_block([win, loss, declared]) == (
        "2 cases below the floor, 1 with a declared known loss\n"
        "l2_blocking-fp32-1024x256000: 0.80x is below its min_speedup floor 1.10x on h100: "
        "the optimization does not deliver its claim here\n"
        "side_stream_ema-bf16-4096: 1.01x is below its min_speedup floor 1.05x on h100: declared known loss "
        "(the EMA hides behind a GEMM that already fills the GPU)")
    assert notes.below_floor_block([win]) == ""


def test_host_note_names_the_pinned_cpus_with_their_model_and_each_build_once() -> None:
    prov = {"host_cpus": "host CPUs 1,2 of 16 (launch 7.3 us)", "host_cpu_model": "Intel Xeon Platinum 8480+"}
    records = [{"provenance": prov, "build": "CUDA build: 15 sources in 0.0 s"},
               {"provenance": prov, "build": "CUDA build: 15 sources in 0.0 s"}, {"provenance": None}]
    assert notes.host_note(records) == ("host CPUs 1,2 of 16 (launch 7.3 us) on Intel Xeon Platinum 8480+\n"
                                         "CUDA build: 15 sources in 0.0 s")


def test_first_calls_that_compiled_are_listed_with_their_steady_times() -> None:
    compiled = make_record(key="compile_block-bf16-16384")
    compiled["optimized"] = {**compiled["optimized"], "first_call_ms": 41200.0, "compiled_graphs": 3,
                             "wall_median_ms": 1.2}
    autotuned = make_record(key="autotuned-bf16-8")
    autotuned["baseline"] = {**autotuned["baseline"], "first_call_ms": 250.0, "compiled_graphs": 0,
                             "wall_median_ms": 2.0}
    quick = make_record(key="quick-fp32-8")
    quick["baseline"] = {**quick["baseline"], "first_call_ms": 50.0, "compiled_graphs": 0, "wall_median_ms": 2.0}
    assert notes.compile_block([quick, compiled, autotuned]) == (
        "first calls that compiled (outside the samples):\n"
        "autotuned-bf16-8: baseline 250 ms (steady 2 ms)\n"
        "compile_block-bf16-16384: optimized 41.2 s, 3 graphs (steady 1.2 ms)")
    assert notes.compile_block([quick]) == ""


def test_a_memory_case_shows_its_memory_ratio_and_its_time_ratio() -> None:
    rec = make_record(key="activation_checkpointing-bf16-16x4x4096", goal="memory", speedup=4.4,
                      time_speedup=[0.77, 0.76, 0.78])
    assert notes.memory_block([rec, make_record()]) == (
        "activation_checkpointing-bf16-16x4x4096: peak memory 4.40x lower; time ratio 0.77x [0.76, 0.78]")


def test_the_latency_block_shows_both_arms_request_metrics_and_their_engine_statistics() -> None:
    metrics = {"ttft_p50": 20.0, "ttft_p99": 40.0, "tpot_p50": 4.0, "tpot_p99": 6.0, "e2e_p50": 90.0,
               "e2e_p99": 120.0, "tokens_per_s": 900.0, "scheduler_share": 0.21}
    base = arm([4.0], median_ms=4.0, q1_ms=4.0, q3_ms=4.0, wall_median_ms=4.0, latency=metrics)
    opt = arm([2.0], median_ms=2.0, q1_ms=2.0, q3_ms=2.0, wall_median_ms=2.0,
              latency={**metrics, "tpot_p99": 3.0, "scheduler_share": 0.34})
    block = notes.latency_block([make_record(key="serving-bf16-64x2", goal="latency", baseline=base, optimized=opt)])
    assert block.splitlines()[0] == "request latency (baseline -> optimized, medians over calls):"
    assert "tpot_p99 6 ms -> 3 ms" in block and block.endswith("scheduler_share 0.21 -> 0.34"), block
