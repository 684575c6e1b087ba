"""--update-expectations: what it writes, what it keeps, and what it reports."""

from __future__ import annotations

import json


def read(chapter, hardware="cpu"):
    return json.loads((chapter.path / f"expectations/{hardware}/ch90_toy.json").read_text())


def test_update_records_the_case_with_margin_arm_times_and_provenance(run_toy, chapter):
    result = run_toy("--update-expectations")
    result.assert_outcomes(passed=1)
    data = read(chapter)
    assert (data["format"], data["hardware"], data["chapter"]) == (1, "cpu", "ch90_toy")
    entry = data["entries"]["double-fp32-1024"]
    assert entry["noise_margin"] >= 0.03 and entry["ci"][0] <= entry["speedup"] <= entry["ci"][1]
    assert entry["baseline"]["median_ms"] > entry["optimized"]["median_ms"] > 0
    assert entry["baseline"]["samples"] == entry["optimized"]["samples"] == entry["rounds"] >= 3
    assert entry["provenance"]["torch"] and entry["provenance"]["date"]
    text = (chapter.path / "expectations/cpu/ch90_toy.json").read_text()
    assert text.endswith("\n") and text == json.dumps(data, indent=2, sort_keys=True) + "\n"
    result.stdout.re_match_lines([r".*cpu .*ch90_toy .*double-fp32-1024 .*new .*"])


def test_update_new_keeps_a_recorded_entry_and_other_entries_survive(run_toy, chapter):
    run_toy("--update-expectations").assert_outcomes(passed=1)
    path = chapter.path / "expectations/cpu/ch90_toy.json"
    data = read(chapter)
    data["entries"]["some-other-case"] = dict(data["entries"]["double-fp32-1024"], speedup=9.5)
    data["entries"]["double-fp32-1024"]["speedup"] = 4.25
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    result = run_toy("--update-expectations=new", "-W", "ignore::pytest_aiperf.verdict.AiperfWarning")
    result.assert_outcomes(passed=1)
    after = read(chapter)["entries"]
    assert after["double-fp32-1024"]["speedup"] == 4.25
    assert after["some-other-case"]["speedup"] == 9.5
    result.stdout.re_match_lines([r".*double-fp32-1024 .*kept .*"])


def test_an_entry_whose_case_no_longer_exists_is_reported(run_toy, chapter):
    run_toy("--update-expectations").assert_outcomes(passed=1)
    path = chapter.path / "expectations/cpu/ch90_toy.json"
    data = read(chapter)
    data["entries"]["renamed_away-fp32-8"] = data["entries"]["double-fp32-1024"]
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    result = run_toy("-m", "perf")
    result.assert_outcomes(passed=1)
    result.stdout.re_match_lines([r".*expectations/cpu/ch90_toy.json: renamed_away-fp32-8.*"])


def test_a_corrupt_expectations_file_is_a_usage_error_and_is_left_untouched(run_toy, chapter):
    path = chapter.path / "expectations/cpu/ch90_toy.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"format": 1, "entries": {oops')
    result = run_toy("--update-expectations")
    assert result.ret == 4, result.stdout.str() + result.stderr.str()
    result.stderr.re_match_lines([r".*expectations/cpu/ch90_toy.json: .*not valid JSON.*not modified.*"])
    assert path.read_text() == '{"format": 1, "entries": {oops'
