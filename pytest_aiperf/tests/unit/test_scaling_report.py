"""The scaling table of distributed cases: one row per world size of a case measured at two or more, its bus
bandwidth against the world's all-reduce, and its times relative to the fewest ranks."""

from __future__ import annotations

import re
from typing import Any

from pytest_aiperf import scaling
from pytest_aiperf.record import arm
from pytest_aiperf.tests.unit.test_report import make_record


def world_record(case: str, ranks: int, base_ms: float, opt_ms: float, *, nbytes: float = 0.0,
                 busbw: float | None = None, compute_ms: float | None = None,
                 chapter: str = "ch04_distributed_training", **overrides: Any) -> dict[str, Any]:
    """A distributed case's record on ``ranks`` ranks: keyed ``<case>-<ranks>gpus``, ``nbytes`` interconnect bytes per
    rank, ``busbw`` the world's all-reduce bus bandwidth in GB/s (None: not measured), ``compute_ms`` the median of its
    ``compute_only`` (None: a pair without one); speedup from the medians."""
    speedup = base_ms / opt_ms
    compute = None if compute_ms is None else arm([compute_ms], median_ms=compute_ms, q1_ms=compute_ms,
                                                  q3_ms=compute_ms, wall_median_ms=compute_ms)
    fields = dict(compute_only=compute,
        key=f"{case}-{ranks}gpus", chapter=chapter, hardware=f"{ranks}x_h200", provenance={"ranks": ranks},
        work={"bytes": nbytes, "flops": 0.0, "items": 0.0, "item_name": ""},
        ceilings={"busbw_gbps": busbw} if busbw else None, speedup=speedup, ci=[speedup - 0.05, speedup + 0.05],
        baseline=arm([base_ms], median_ms=base_ms, q1_ms=base_ms, q3_ms=base_ms, wall_median_ms=base_ms),
        optimized=arm([opt_ms], median_ms=opt_ms, q1_ms=opt_ms, q3_ms=opt_ms, wall_median_ms=opt_ms))
    return make_record(**{**fields, **overrides})


def rows(table: str) -> list[list[str]]:
    """Every row below the header and its rule, split into cells (two or more spaces apart)."""
    return [re.split(r"\s{2,}", line.strip()) for line in table.splitlines()[2:]]


BUCKETED = "bucketed_gradient_allreduce-fp32-12x768x3072x50257x1024"
OVERLAPPED = "overlapped_gradient_allreduce-bf16-2048x4096x14336x4"


def test_each_world_size_gets_a_row_with_its_bus_bandwidth_and_its_times_relative_to_the_fewest_ranks() -> None:
    # 2 ranks: 400 MB in 1.25 ms = 320 GB/s, 80% of 400; 4 ranks: 600 MB in 2 ms = 300 GB/s, 80% of 375.
    records = [world_record(BUCKETED, 4, 5.5, 2.0, nbytes=600e6, busbw=375.0),
               world_record(BUCKETED, 2, 5.0, 1.25, nbytes=400e6, busbw=400.0)]
    table = scaling.scaling_table(records)
    assert re.split(r"\s{2,}", table.splitlines()[0].strip()) == [
        "case", "ranks", "baseline", "optimized", "speedup", "bus GB/s (% busbw)", "optimized vs 2 ranks",
        "baseline vs 2 ranks", "comm GB/s (% busbw)", "comm hidden"]
    assert rows(table) == [
        [BUCKETED, "2", "5 ms", "1.25 ms", "4.00x [3.95, 4.05]", "320 (80%)", "1.00x", "1.00x", "-", "-"],
        [BUCKETED, "4", "5.5 ms", "2 ms", "2.75x [2.70, 2.80]", "300 (80%)", "1.60x", "1.10x", "-", "-"],
    ]


def test_a_case_measured_at_one_world_size_gives_no_rows() -> None:
    alone = [world_record(BUCKETED, 2, 5.0, 1.25), make_record()]
    assert scaling.scaling_table(alone) == ""
    assert scaling.scaling_block(alone) == ""


def test_a_case_driving_several_gpus_from_one_process_is_not_a_world_size() -> None:
    peer_copies = [make_record(key=f"peer_copy-fp32-4096-{n}gpus", hardware=f"{n}x_h200") for n in (2, 4)]
    assert scaling.scaling_table(peer_copies) == ""


def test_two_cases_interleaved_are_grouped_each_sorted_by_ranks() -> None:
    records = [world_record(OVERLAPPED, 4, 15.0, 12.0), world_record(BUCKETED, 2, 5.0, 1.25),
               world_record(OVERLAPPED, 2, 13.0, 11.0), world_record(BUCKETED, 4, 5.5, 2.0)]
    assert [row[:2] for row in rows(scaling.scaling_table(records))] == [
        [BUCKETED, "2"], [BUCKETED, "4"], [OVERLAPPED, "2"], [OVERLAPPED, "4"]]


def test_a_world_without_a_measured_all_reduce_shows_a_dash_for_its_share() -> None:
    records = [world_record(BUCKETED, 2, 5.0, 1.25, nbytes=400e6), world_record(BUCKETED, 4, 5.5, 2.0)]
    assert [row[5] for row in rows(scaling.scaling_table(records))] == ["320 (-)", "-"]


def test_cases_with_different_fewest_ranks_are_compared_with_their_own_fewest() -> None:
    records = [world_record(BUCKETED, 2, 5.0, 1.0), world_record(BUCKETED, 4, 6.0, 1.5),
               world_record(OVERLAPPED, 4, 10.0, 8.0), world_record(OVERLAPPED, 8, 12.0, 8.0)]
    table = scaling.scaling_table(records)
    assert "optimized vs fewest ranks" in table.splitlines()[0]
    assert [row[6:8] for row in rows(table)] == [["1.00x", "1.00x"], ["1.50x", "1.20x"], ["1.00x", "1.00x"],
                                                 ["1.00x", "1.20x"]]


def test_an_overlap_pair_shows_its_baselines_communication_rate_and_the_share_the_optimized_arm_hides() -> None:
    # 2 ranks: 13 ms - 10 ms of compute = 3 ms of communication: 704 MB / 3 ms = 235 GB/s, 59% of 400;
    # the optimized arm saves 2 of those 3 ms: 67% hidden. 4 ranks: 1056 MB / 5.2 ms = 203 GB/s, 54% of 375;
    # 3.9 of 5.2 ms hidden: 75%.
    records = [world_record(OVERLAPPED, 2, 13.0, 11.0, nbytes=704e6, busbw=400.0, compute_ms=10.0),
               world_record(OVERLAPPED, 4, 15.2, 11.3, nbytes=1056e6, busbw=375.0, compute_ms=10.0)]
    assert [row[8:] for row in rows(scaling.scaling_table(records))] == [["235 (59%)", "67%"], ["203 (54%)", "75%"]]


def test_a_baseline_no_slower_than_its_computation_alone_shows_dashes_for_its_communication() -> None:
    records = [world_record(OVERLAPPED, 2, 10.0, 9.0, nbytes=704e6, busbw=400.0, compute_ms=10.0),
               world_record(OVERLAPPED, 4, 9.5, 9.0, nbytes=1056e6, busbw=375.0, compute_ms=10.0)]
    assert [row[8:] for row in rows(scaling.scaling_table(records))] == [["-", "-"], ["-", "-"]]


def test_an_overlap_pair_in_a_world_without_a_measured_all_reduce_shows_its_rate_without_a_share() -> None:
    records = [world_record(OVERLAPPED, 2, 13.0, 11.0, nbytes=704e6, compute_ms=10.0),
               world_record(OVERLAPPED, 4, 13.0, 14.0, compute_ms=10.0)]
    assert [row[8:] for row in rows(scaling.scaling_table(records))] == [["235 (-)", "67%"], ["-", "-33%"]]


def test_the_scaling_block_names_what_the_times_are() -> None:
    records = [world_record(BUCKETED, 2, 5.0, 1.25), world_record(BUCKETED, 4, 5.5, 2.0)]
    block = scaling.scaling_block(records)
    assert block.splitlines()[0] == "scaling (distributed cases; slowest rank per round)"
    assert block.endswith(scaling.scaling_table(records))
