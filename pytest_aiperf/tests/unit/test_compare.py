"""``aiperf compare-hardware``: cases recorded under two hardware keys, lined up from hand-made expectation files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_aiperf import compare


def entry(speedup: float, margin: float, base_ms: float, opt_ms: float, gpu: str, **provenance: Any) -> dict:
    return {"speedup": speedup, "noise_margin": margin, "baseline": {"median_ms": base_ms},
            "optimized": {"median_ms": opt_ms}, "provenance": {"gpu": gpu, "driver": "580.1", **provenance}}


def write(root: Path, hardware: str, chapter: str, entries: dict[str, Any]) -> None:
    folder = root / hardware
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"format": 1, "hardware": hardware, "chapter": chapter, "entries": entries}
    (folder / f"{chapter}.json").write_text(json.dumps(doc))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """h100 and h200 share ch07 (one case gains, one loses, one moves within its margins) and ch09 (nothing in common);
    ch08 is recorded only on h100; h200 has a malformed entry."""
    h100, h200 = "NVIDIA H100 80GB HBM3", "NVIDIA H200"
    write(tmp_path, "h100", "ch07_memory_access", {
        "coalescing-fp32-4096": entry(4.0, 0.05, 2.0, 0.5, h100),
        "tma_copy-bf16-8192": entry(3.0, 0.04, 1.2, 0.4, h100),
        "vectorized-fp32-4096": entry(2.0, 0.10, 1.0, 0.5, h100),
        "only_here-fp32-1": entry(1.5, 0.03, 1.0, 0.66, h100)})
    write(tmp_path, "h100", "ch08_occupancy", {"tiling-fp32-1024": entry(9.0, 0.03, 9.0, 1.0, h100)})
    write(tmp_path, "h100", "ch09_fusion", {"a-fp32-1": entry(2.0, 0.03, 2.0, 1.0, h100)})
    write(tmp_path, "h200", "ch07_memory_access", {
        "coalescing-fp32-4096": entry(5.0, 0.06, 1.5, 0.3, h200, ceilings={"copy_gbps": 4300.0}),
        "tma_copy-bf16-8192": entry(2.5, 0.05, 0.75, 0.3, h200),
        "vectorized-fp32-4096": entry(2.15, 0.03, 0.86, 0.4, h200),
        "broken-fp32-1": {"speedup": -1}})
    write(tmp_path, "h200", "ch09_fusion", {"b-fp32-1": entry(2.0, 0.03, 2.0, 1.0, h200)})
    return tmp_path


def rows(root: Path) -> list[compare.Row]:
    return compare.line_up(compare.read_key(root, "h100")[0], compare.read_key(root, "h200")[0])


def test_only_cases_recorded_under_both_keys_in_the_same_chapter_are_lined_up(root):
    assert [(row.chapter, row.key) for row in rows(root)] == [("ch07_memory_access", "coalescing-fp32-4096"),
                                                              ("ch07_memory_access", "tma_copy-bf16-8192"),
                                                              ("ch07_memory_access", "vectorized-fp32-4096")]


def test_a_technique_gains_or_loses_only_beyond_both_margins(root):
    outcomes = {row.key: (round(row.change, 4), row.outcome) for row in rows(root)}
    assert outcomes == {"coalescing-fp32-4096": (1.25, "gains"),  # beyond 1 + 6%
                        "tma_copy-bf16-8192": (0.8333, "loses"),  # below 1 / (1 + 5%)
                        "vectorized-fp32-4096": (1.075, "same")}  # beyond h200's 3% but within h100's 10%


def test_each_arms_time_ratio_is_new_over_old(root):
    coalescing = rows(root)[0]
    assert coalescing.arm_ratio("baseline") == pytest.approx(0.75)
    assert coalescing.arm_ratio("optimized") == pytest.approx(0.6)


def test_the_report_shows_margins_times_ratios_and_names_the_techniques_that_move(root):
    text, status = compare.compare(root, "h100", "h200")
    assert status == 0
    lines = text.splitlines()
    assert lines[0] == "h100: gpu NVIDIA H100 80GB HBM3; driver 580.1; no measured ceilings stored with the entries"
    assert lines[1] == "h200: gpu NVIDIA H200; driver 580.1; ceilings copy 4300 GB/s"
    assert "ch07_memory_access" in lines
    row = next(line for line in lines if line.startswith("coalescing-fp32-4096"))
    assert row.split() == ["coalescing-fp32-4096", "4.00x", "+-5%", "5.00x", "+-6%", "1.25x", "2", "ms", "->", "1.5",
                           "ms", "(0.75x)", "500", "us", "->", "300", "us", "(0.60x)", "gains"]
    assert "gain on h200 beyond both margins: coalescing (coalescing-fp32-4096)" in lines
    assert "lose on h200 beyond both margins: tma_copy (tma_copy-bf16-8192)" in lines
    assert "recorded only under h100: 3 cases" in lines and "recorded only under h200: 1 case" in lines
    assert any("entry 'broken-fp32-1' has speedup -1" in line and "left out" in line for line in lines)


def test_keys_without_a_common_case_exit_1_and_say_so(root):
    text, status = compare.compare(root, "h100", "h100-empty")
    assert status == 1 and "no case is recorded under both" in text


def test_the_console_entry_prints_the_report_and_rejects_a_missing_folder(root, capsys):
    assert compare.main(["compare-hardware", "h100", "h200", "--root", str(root)]) == 0
    assert "gain on h200 beyond both margins" in capsys.readouterr().out
    assert compare.main(["compare-hardware", "h100", "b200", "--root", str(root)]) == 2
    assert capsys.readouterr().err.strip() == f"aiperf: no folder {root / 'b200'}"
    with pytest.raises(SystemExit) as exit_info:
        compare.main([])
    assert exit_info.value.code == 2
