"""The HTML report's page, built from hand-made records: what it shows, in which order, escaped, offline, small."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path
from typing import Any

from pytest_aiperf import html_output, html_report, svg
from pytest_aiperf.record import arm
from pytest_aiperf.tests.unit.test_report import GIB, floor_record, make_record, memory_record

PLANTED = "<script>document.body.dataset.pwned='1'</script>"
PROVENANCE = {"gpu": "NVIDIA H100 80GB HBM3", "sm_count": 132, "driver": "580.159.04", "cuda": "13.0",
              "torch": "2.11.0+cu130", "triton": "3.6.0", "python": "3.12.3", "host_cpu_model": "Xeon",
              "host_cpus": "host CPUs 1,4 of 16"}


def synthetic(count: int) -> list[dict[str, Any]]:
    """``count`` records over ten chapters, every verdict, with and without flops, a memory goal every tenth."""
    verdicts = ("PASS", "PASS", "PASS", "REGRESSED", "IMPROVED", "INCONCLUSIVE")
    records = []
    for i in range(count):
        speedup = 1.0 + (i % 17) / 3
        base = 0.05 * (1 + i % 13)
        work = {"bytes": 1e6 * (1 + i), "flops": 1e9 * (1 + i % 5) if i % 2 else 0.0, "items": 0.0, "item_name": ""}
        rec = make_record(key=f"case_{i:03d}-fp32-{1024 * (1 + i % 8)}x4096", chapter=f"ch{1 + i % 10:02d}_chapter",
                          verdict=verdicts[i % len(verdicts)], speedup=speedup, ci=[speedup * 0.97, speedup * 1.03],
                          work=work, reason=f"speedup {speedup:.2f}x, see the band", provenance=PROVENANCE,
                          baseline=arm([base] * 5, median_ms=base, q1_ms=base, q3_ms=base, wall_median_ms=base,
                                       energy_mj=3.0, first_call_ms=900.0, compiled_graphs=i % 3),
                          optimized=arm([base / speedup] * 5, median_ms=base / speedup, q1_ms=base / speedup,
                                        q3_ms=base / speedup, wall_median_ms=base / speedup, energy_mj=1.0))
        if i % 10 == 9:
            rec.update(goal="memory", time_speedup=[0.9, 0.85, 0.95])
            rec["baseline"]["peak_bytes"], rec["optimized"]["peak_bytes"] = 4 * GIB, GIB
        records.append(rec)
    return records


def histories(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    return {(r["hardware"], r["chapter"], r["key"]): [
        {"speedup": r["speedup"] * f, "noise_margin": 0.04, "date": f"2026-11-{20 + n}T10:00:00+00:00",
         "commit": f"abc{n}", "gpu": "NVIDIA H100 80GB HBM3"} for n, f in enumerate((0.98, 1.02, 0.99))]
        for r in records}


def page(*records: dict[str, Any], **run: Any) -> str:
    return html_report.render(html_report.Run(records=list(records), **run))


def test_every_case_has_one_row_with_failures_and_inconclusive_cases_first():
    records = [make_record(key="a_pass-fp32-1"), make_record(key="b_regressed-fp32-1", verdict="REGRESSED"),
               make_record(key="c_inconclusive-fp32-1", verdict="INCONCLUSIVE"),
               make_record(key="d_improved-fp32-1", verdict="IMPROVED")]
    failed = html_report.Failed("suites/ch01/test_performance_basics.py::test_perf[e_wrong-fp32-1]", "e_wrong-fp32-1",
                                "ch01_performance_basics", "AssertionError: optimized disagrees")
    text = page(*records, failed=[failed])
    rows = re.findall(r'<tr data-case="([^"]+)" data-verdict="([A-Z]+)"', text)
    assert rows == [("e_wrong-fp32-1", "FAILED"), ("b_regressed-fp32-1", "REGRESSED"),
                    ("c_inconclusive-fp32-1", "INCONCLUSIVE"), ("d_improved-fp32-1", "IMPROVED"),
                    ("a_pass-fp32-1", "PASS")]
    attention = text[text.index('id="attention"'):text.index("</section>", text.index('id="attention"'))]
    assert [key for key in ("e_wrong", "b_regressed", "c_inconclusive", "d_improved", "a_pass") if key in attention] \
        == ["e_wrong", "b_regressed", "c_inconclusive"]
    assert "5 cases:" in text and ">FAILED 1<" in text and ">REGRESSED 1<" in text and ">PASS 1<" in text


def test_ids_reasons_and_tracebacks_are_escaped_and_nothing_loads_from_the_network():
    failed = html_report.Failed(f"t.py::test[{PLANTED}]", PLANTED, "ch01", f"Traceback\nValueError: {PLANTED}")
    text = page(make_record(key=PLANTED, reason=f"because {PLANTED}", verdict="REGRESSED"), failed=[failed])
    assert PLANTED not in text
    assert text.count("<script>") == 1  # the page's own
    assert "&lt;script&gt;document.body.dataset.pwned=&#x27;1&#x27;&lt;/script&gt;" in text
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.IGNORECASE)
    assert "<link" not in text and "@import" not in text and "url(" not in text


def test_the_header_names_the_machine_and_the_ceilings_measured_in_the_run():
    records = [make_record(provenance=PROVENANCE),
               make_record(key="b-fp32-1", provenance={**PROVENANCE, "host_cpus": "host CPUs 2,3 of 16"},
                           ceilings={"copy_gbps": 3200.0, "matmul_tflops": {"fp32": 62.0, "bf16": 880.0}})]
    machine = re.sub(r"<[^>]+>", "|", page(*records).split('<dl class="machine">')[1].split("</dl>")[0])
    for fact in ("GPU||NVIDIA H100 80GB HBM3", "driver||580.159.04", "CUDA||13.0", "torch||2.11.0+cu130",
                 "triton||3.6.0", "host CPUs||host CPUs 1,4 of 16; host CPUs 2,3 of 16",
                 "measured ceilings||copy 3100 GB/s, matmul bf16 890 TFLOP/s, matmul fp32 61 TFLOP/s"):
        assert fact in machine, machine


def test_a_run_without_gpu_ceilings_says_none_were_measured_and_charts_its_points_without_roofs():
    text = page(make_record(ceilings=None, provenance={}, backend="cpu-clock"))
    assert "none measured (the host clock measures none)" in text
    roofline = text[text.index("<figure>"):text.index("</figure>")]
    assert '<polyline class="roof"' not in roofline and roofline.count("<circle class=\"v-PASS\"") == 2


def test_the_roofline_has_both_arms_of_each_case_titled_by_case_id_under_the_measured_roofs():
    text = page(make_record(), floor_record())
    roofline = text[text.index("<figure>"):text.index("</figure>")]
    assert "copy 3000 GB/s" in roofline and "fp32 60 TFLOP/s" in roofline and "bf16 900 TFLOP/s" in roofline
    assert "<title>layernorm_fused-fp32-4096x4096 (baseline): 15.3 TFLOP/s at 18.2 flop/byte</title>" in roofline
    assert "<title>layernorm_fused-fp32-4096x4096 (optimized): 49.3 TFLOP/s at 18.2 flop/byte</title>" in roofline
    bandwidth = text[text.index("<figure>", text.index("</figure>")):]
    assert "<title>pinned_copy-fp32-1048576 (optimized): 5e+03 GB/s moving 3.73 GiB</title>" in bandwidth


def test_each_row_shows_both_medians_the_interval_against_its_band_the_goal_metric_and_the_first_call():
    rec = make_record(baseline=arm([2.6], median_ms=2.607, q1_ms=2.6, q3_ms=2.61, wall_median_ms=2.63,
                                   energy_mj=310.0, first_call_ms=1234.0, compiled_graphs=2))
    row = page(rec).split('<tr data-case="layernorm_fused-fp32-4096x4096"')[1].split("</tr>")[0]
    cells = [unescape(re.sub(r"<[^>]+>", " ", cell)).split() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]
    assert cells[1:5] == [["PASS"], ["2.61", "ms"], ["812", "us"],
                          ["3.21x", "[3.18,", "3.25]", "gate", "3.10x", "+-4%"]]
    assert '<rect class="band"' in row and '<line class="floor"' in row and '<line class="exp"' in row
    assert " ".join(cells[6]) == "2710 GB/s, 49.3 TFLOP/s (90% of ceiling)"
    assert " ".join(cells[7]) == "310 -> 98 mJ" and " ".join(cells[8]) == "1.23 s (2 graphs) / -"
    assert "speedup 3.21x [3.18, 3.25]; gate 3.10x +-4%; min_speedup 1.20x" in row


def test_the_memory_goal_shows_its_peaks_and_the_time_it_costs():
    row = page({**memory_record(), "time_speedup": [0.75, 0.7, 0.8]}).split("<tr ")[1]
    assert "<td>peak 4 GiB -&gt; 1.5 GiB (2.67x lower); time 0.75x [0.70, 0.80]</td>" in row


def test_the_recording_history_is_a_sparkline_of_the_pooled_speedups_with_this_run_after_them():
    rec = make_record()
    recordings = histories([rec])[(rec["hardware"], rec["chapter"], rec["key"])]
    text = page(rec, histories={(rec["hardware"], rec["chapter"], rec["key"]): recordings})
    spark = text[text.index('<svg class="spark"'):]
    spark = spark[:spark.index("</svg>")]
    assert spark.count("<circle") == 4 and "<polyline" in spark
    assert "<title>2026-11-20 abc0 NVIDIA H100 80GB HBM3: 3.15x +-4%</title>" in spark
    assert '<circle class="now v-PASS"' in spark and "<title>this run: 3.21x</title>" in spark
    recorded = page(rec, histories={(rec["hardware"], rec["chapter"], rec["key"]): [*recordings, {"speedup": 3.2106}]})
    assert '<circle class="now' not in recorded  # this run is already the last recording


def test_a_hundred_cases_make_a_page_well_under_two_megabytes():
    records = synthetic(100)
    failed = [html_report.Failed(f"t.py::test[f{i}]", f"f{i}", "ch01_chapter", "Traceback\n" + "  line\n" * 200)
              for i in range(5)]
    text = page(*records, failed=failed, histories=histories(records))
    assert len(text.encode()) < 600_000, len(text.encode())
    assert len(re.findall(r'<tr data-case="', text)) == 105


def test_an_interval_open_to_the_right_is_drawn_for_a_floor():
    drawn = svg.interval(1.8, 1.7, 1.9, band=(1.2, None), floor=1.2, expected=None, verdict="PASS", title="t")
    band = re.search(r'<rect class="band" x="([0-9.]+)" y="5" width="([0-9.]+)"', drawn)
    assert float(band.group(1)) + float(band.group(2)) == 200


def test_the_history_of_each_record_is_read_from_its_expectation_entry(tmp_path: Path):
    folder = tmp_path / "h100"
    folder.mkdir()
    rec = make_record()
    doc = {"format": 1, "hardware": "h100", "chapter": rec["chapter"], "entries": {
        rec["key"]: {"speedup": 3.1, "noise_margin": 0.04, "recordings": [{"speedup": 3.0}, {"speedup": 3.2}]},
        "other": {"speedup": -1}}}
    (folder / f"{rec['chapter']}.json").write_text(json.dumps(doc))
    missing = make_record(key="missing-fp32-1")
    other_hardware = make_record(hardware="h200")
    found = html_output.histories(tmp_path, [rec, missing, other_hardware])
    assert found == {("h100", rec["chapter"], rec["key"]): [{"speedup": 3.0}, {"speedup": 3.2}]}


def test_a_case_id_is_read_from_its_node_id():
    assert html_output.case_of("suites/ch90/test_toy.py::test_x[double-fp32-1024]") == "double-fp32-1024"
    assert html_output.case_of("suites/ch90/test_toy.py::test_x") == "suites/ch90/test_toy.py::test_x"


def test_a_failed_case_shows_the_exception_line_of_its_traceback():
    text = ("E   KeyError: first\n\nDuring handling of the above exception, another exception occurred:\n"
            "def test():\n>       aiperf.run(pair)\nE       ValueError: bad input\nE       second line\n\n"
            "t.py:4: ValueError")
    assert html_report.error_line(text) == "ValueError: bad input"
    assert html_report.error_line("t.py:4: ValueError\n") == "t.py:4: ValueError"


def test_a_latency_stack_shows_both_arms_request_metrics_and_its_ablations():
    metrics = {"ttft_p50": 20.0, "ttft_p99": 40.0, "tpot_p50": 4.0, "tpot_p99": 6.0, "e2e_p50": 90.0,
               "e2e_p99": 120.0, "tokens_per_s": 900.0}
    rec = make_record(goal="latency", speedup=3.0,
                      baseline=arm([4.0], median_ms=4.0, q1_ms=4.0, q3_ms=4.0, wall_median_ms=4.0, latency=metrics),
                      optimized=arm([2.0], median_ms=2.0, q1_ms=2.0, q3_ms=2.0, wall_median_ms=2.0,
                                    latency={**metrics, "tpot_p99": 2.0}),
                      ablations={"no_graphs": {"speedup": 1.5, "ci": [1.4, 1.6]}})
    cell = unescape(re.sub(r"<[^>]+>", " ", page(rec).split("<tr ")[1].split("</td>")[6]))
    assert "tpot_p99 6 ms -> 2 ms" in cell and "tokens/s 900 -> 900" in cell, cell
    assert "ablations: no_graphs 1.50x [1.40, 1.60] (graphs gives 2.00x), the parts multiply to 2.00x" in cell, cell
