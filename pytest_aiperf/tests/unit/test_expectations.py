"""expectations.py: the golden files of measured speedups - format, validation, merge-on-update, atomic writes,
unused entries and git provenance."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pytest_aiperf import expectations
from pytest_aiperf.expectations import (
    Change,
    ExpectationsError,
    Store,
    apply_updates,
    entry_from_record,
    git_commit,
    load,
    path_for,
    stale,
)
from pytest_aiperf.record import arm

DATE = "2026-11-21T13:05:00+00:00"
PROVENANCE = {"gpu": "NVIDIA H100 80GB HBM3", "sm_count": 132, "l2_bytes": 52428800, "driver": "580.159.04",
              "cuda": "13.0", "torch": "2.11.0+cu130", "triton": "3.6.0", "python": "3.12.3"}
GPUS = {"h100": "NVIDIA H100 80GB HBM3", "h200": "NVIDIA H200"}


def make_record(key: str = "batched_matmul-fp32-64x128x128", *, speedup: float = 3.2123456789012345,
                chapter: str = "ch01_performance_basics", hardware: str = "h100",
                noise_margin: Any = 0.04) -> dict[str, Any]:
    return {
        "key": key, "chapter": chapter, "hardware": hardware, "goal": "speed", "rounds": 4,
        "device": "cuda", "backend": "cuda-events", "min_speedup": 1.2,
        "speedup": speedup, "ci": [3.18, 3.25], "noise_margin": noise_margin,
        "baseline": arm([1.0, 1.02, 1.04, 1.1], median_ms=1.03, q1_ms=1.01, q3_ms=1.07, wall_median_ms=1.1,
                        energy_mj=310.2),
        "optimized": arm([0.31, 0.318, 0.32, 0.33], median_ms=0.319, q1_ms=0.314, q3_ms=0.325,
                         wall_median_ms=0.34),
        "provenance": {**PROVENANCE, "gpu": GPUS.get(hardware.split("x_")[-1], "NVIDIA H100 80GB HBM3")},
    }


def update(root: Path, records: list[dict], mode: str = "all") -> list[Change]:
    return apply_updates(root, records, mode=mode, date=DATE, commit="abc1234", dirty=False)


def write_doc(path: Path, doc: Any) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = doc if isinstance(doc, str) else json.dumps(doc)
    path.write_text(text, encoding="utf-8")
    return path.read_bytes()


def valid_doc(entries: dict | None = None) -> dict[str, Any]:
    return {"format": 1, "hardware": "h100", "chapter": "ch01_performance_basics",
            "entries": entries if entries is not None else {"other": {"speedup": 2.0, "noise_margin": 0.1,
                                                                      "note": "hand-written"}}}


def test_path_for_is_hardware_folder_and_chapter_file(tmp_path: Path) -> None:
    assert path_for(tmp_path, "h100", "ch01_performance_basics") == tmp_path / "h100" / "ch01_performance_basics.json"


@pytest.mark.parametrize(("hardware", "chapter"), [("..", "ch01"), ("h100", "../ch01"), ("", "ch01"), ("h100", "")])
def test_path_for_refuses_names_that_leave_the_folder(tmp_path: Path, hardware: str, chapter: str) -> None:
    with pytest.raises(ValueError, match="cannot name an expectations file"):
        path_for(tmp_path, hardware, chapter)


def test_load_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    assert load(tmp_path / "h100" / "ch01.json") == {}


def test_entry_from_record_keeps_numbers_as_measured() -> None:
    entry = entry_from_record(make_record(), date=DATE, commit="abc1234", dirty=True)
    assert entry == {
        "speedup": 3.2123456789012345, "ci": [3.18, 3.25], "noise_margin": 0.04, "goal": "speed", "rounds": 4,
        "timing": "cuda-events",
        "baseline": {"median_ms": 1.03, "samples": 4, "energy_mj": 310.2},
        "optimized": {"median_ms": 0.319, "samples": 4, "energy_mj": None},
        "provenance": {**PROVENANCE, "date": DATE, "commit": "abc1234", "dirty": True},
        "margin_basis": "this recording",
        "recordings": [{"speedup": 3.2123456789012345, "noise_margin": 0.04, "baseline_ms": 1.03,
                        "optimized_ms": 0.319, "date": DATE, "commit": "abc1234", "gpu": PROVENANCE["gpu"],
                        "gpu_uuid": None, "host_cpus": None, "host_cpu_model": None, "launch_us": None}],
    }


@pytest.mark.parametrize(("speedup", "margin"), [(0.0, 0.04), (-1.5, 0.04), (3.0, None), (3.0, -0.01),
                                                 (float("nan"), 0.04)])
def test_entry_from_record_refuses_what_load_could_not_read_back(speedup: float, margin: Any) -> None:
    with pytest.raises(ValueError, match="cannot record"):
        entry_from_record(make_record(speedup=speedup, noise_margin=margin), date=DATE, commit=None, dirty=None)


def test_update_then_load_round_trips_every_field(tmp_path: Path) -> None:
    record = make_record()
    changes = update(tmp_path, [record])
    assert changes == [Change("h100", "ch01_performance_basics", record["key"], "new", None, 3.2123456789012345,
                              None, 0.04)]
    path = path_for(tmp_path, "h100", "ch01_performance_basics")
    loaded = load(path, hardware="h100", chapter="ch01_performance_basics")
    assert loaded == {record["key"]: entry_from_record(record, date=DATE, commit="abc1234", dirty=False)}
    assert loaded[record["key"]]["speedup"] == 3.2123456789012345


def test_written_file_has_sorted_keys_indent_two_and_a_trailing_newline(tmp_path: Path) -> None:
    update(tmp_path, [make_record("b_case-fp32-8"), make_record("a_case-fp32-8")])
    text = path_for(tmp_path, "h100", "ch01_performance_basics").read_text(encoding="utf-8")
    assert text.startswith('{\n  "chapter": "ch01_performance_basics",\n  "entries": {\n    "a_case-fp32-8": {\n')
    assert text.endswith('  "format": 1,\n  "hardware": "h100"\n}\n')
    assert text.index('"b_case-fp32-8"') > text.index('"a_case-fp32-8"')
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"


def test_update_merges_and_leaves_other_entries_untouched(tmp_path: Path) -> None:
    path = path_for(tmp_path, "h100", "ch01_performance_basics")
    write_doc(path, valid_doc())
    update(tmp_path, [make_record("new_case-fp32-8")])
    entries = load(path)
    assert set(entries) == {"other", "new_case-fp32-8"}
    assert entries["other"] == {"speedup": 2.0, "noise_margin": 0.1, "note": "hand-written"}


def test_mode_all_rerecords_an_existing_entry(tmp_path: Path) -> None:
    update(tmp_path, [make_record(speedup=3.0)])
    changes = update(tmp_path, [make_record(speedup=2.5)])
    assert [(c.status, c.old, c.new) for c in changes] == [("updated", 3.0, 2.5)]
    assert load(path_for(tmp_path, "h100", "ch01_performance_basics"))[make_record()["key"]]["speedup"] == 2.5


def test_mode_new_keeps_existing_entries_and_adds_missing_ones(tmp_path: Path) -> None:
    path = path_for(tmp_path, "h100", "ch01_performance_basics")
    update(tmp_path, [make_record(speedup=3.0)])
    changes = update(tmp_path, [make_record(speedup=9.0), make_record("added-fp32-8", speedup=1.5)], mode="new")
    assert [(c.key, c.status, c.old, c.new) for c in changes] == [
        ("added-fp32-8", "new", None, 1.5),
        ("batched_matmul-fp32-64x128x128", "kept", 3.0, 9.0),
    ]
    assert load(path)["batched_matmul-fp32-64x128x128"]["speedup"] == 3.0


def test_mode_new_with_nothing_missing_does_not_rewrite_the_file(tmp_path: Path) -> None:
    path = path_for(tmp_path, "h100", "ch01_performance_basics")
    before = write_doc(path, valid_doc({"batched_matmul-fp32-64x128x128": {"speedup": 3.0, "noise_margin": 0.0}}))
    update(tmp_path, [make_record()], mode="new")
    assert path.read_bytes() == before


def test_changes_come_back_sorted_by_hardware_chapter_and_key(tmp_path: Path) -> None:
    changes = update(tmp_path, [make_record("z-fp32-8", hardware="h200"), make_record("b-fp32-8", chapter="ch02_x"),
                                make_record("a-fp32-8", chapter="ch02_x"), make_record("c-fp32-8")])
    assert [(c.hardware, c.chapter, c.key) for c in changes] == [
        ("h100", "ch01_performance_basics", "c-fp32-8"), ("h100", "ch02_x", "a-fp32-8"),
        ("h100", "ch02_x", "b-fp32-8"), ("h200", "ch01_performance_basics", "z-fp32-8"),
    ]


def test_corrupt_file_is_an_error_naming_the_file_and_its_line(tmp_path: Path) -> None:
    path = path_for(tmp_path, "h100", "ch01_performance_basics")
    write_doc(path, '{\n  "format": 1,\n  "entries" {}\n}\n')
    with pytest.raises(ExpectationsError) as info:
        load(path)
    assert str(info.value) == (f"{path}: not valid JSON (line 3 column 13: Expecting ':' delimiter); "
                               "fix or delete it - it was not modified")


def test_update_never_writes_a_corrupt_file_but_writes_the_others(tmp_path: Path) -> None:
    corrupt = path_for(tmp_path, "h100", "ch01_performance_basics")
    before = write_doc(corrupt, '{"format": 1, "entries": {"a": {"speedup": 2.0,')
    changes = update(tmp_path, [make_record("x-fp32-8"), make_record("y-fp32-8", chapter="ch02_x")])
    assert [(c.chapter, c.status) for c in changes] == [("ch01_performance_basics", "error"), ("ch02_x", "new")]
    with pytest.raises(ExpectationsError) as info:
        load(corrupt)
    assert changes[0].detail == str(info.value)
    assert corrupt.read_bytes() == before
    assert sorted(p.name for p in corrupt.parent.iterdir()) == ["ch01_performance_basics.json", "ch02_x.json"]


@pytest.mark.parametrize("version", [2, 0, "1", True, None])
def test_another_format_version_is_refused(tmp_path: Path, version: Any) -> None:
    path = path_for(tmp_path, "h100", "ch01_performance_basics")
    write_doc(path, {**valid_doc(), "format": version})
    with pytest.raises(ExpectationsError, match=r"format is .*reads format 1.*it was not modified"):
        load(path)


@pytest.mark.parametrize(("field", "value"), [("hardware", "a100"), ("chapter", "ch02_x")])
def test_a_file_claiming_another_hardware_or_chapter_is_refused(tmp_path: Path, field: str, value: str) -> None:
    path = path_for(tmp_path, "h100", "ch01_performance_basics")
    before = write_doc(path, {**valid_doc(), field: value})
    with pytest.raises(ExpectationsError, match=f"{field} is '{value}' but the file's path says"):
        load(path, hardware="h100", chapter="ch01_performance_basics")
    assert [c.status for c in update(tmp_path, [make_record()])] == ["error"]
    assert path.read_bytes() == before


@pytest.mark.parametrize(("doc", "problem"), [
    ([1, 2], "top level is list"),
    ({"format": 1}, "'entries' is NoneType"),
    ({"format": 1, "entries": []}, "'entries' is list"),
    ({"format": 1, "entries": {"a": 3.0}}, "entry 'a' is float"),
    ({"format": 1, "entries": {"a": {"noise_margin": 0.1}}}, "entry 'a' has speedup None"),
    ({"format": 1, "entries": {"a": {"speedup": 0, "noise_margin": 0.1}}}, "entry 'a' has speedup 0"),
    ({"format": 1, "entries": {"a": {"speedup": "3", "noise_margin": 0.1}}}, "entry 'a' has speedup '3'"),
    ({"format": 1, "entries": {"a": {"speedup": True, "noise_margin": 0.1}}}, "entry 'a' has speedup True"),
    ('{"format": 1, "entries": {"a": {"speedup": NaN, "noise_margin": 0.1}}}', "entry 'a' has speedup nan"),
    ({"format": 1, "entries": {"a": {"speedup": 2.0}}}, "entry 'a' has noise_margin None"),
    ({"format": 1, "entries": {"a": {"speedup": 2.0, "noise_margin": -0.01}}}, "entry 'a' has noise_margin -0.01"),
])
def test_ill_formed_documents_are_refused_for_the_right_reason(tmp_path: Path, doc: Any, problem: str) -> None:
    path = tmp_path / "h100" / "ch01.json"
    write_doc(path, doc)
    with pytest.raises(ExpectationsError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}: {problem}")


def test_an_unreadable_file_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "h100" / "ch01.json"
    path.mkdir(parents=True)
    with pytest.raises(ExpectationsError, match="unreadable"):
        load(path)


def test_atomic_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    update(tmp_path, [make_record()])
    update(tmp_path, [make_record(speedup=2.0)])
    assert [p.name for p in (tmp_path / "h100").iterdir()] == ["ch01_performance_basics.json"]


def test_a_failed_replace_is_an_error_change_that_keeps_the_old_file_and_removes_the_temporary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = path_for(tmp_path, "h100", "ch01_performance_basics")
    before = write_doc(path, valid_doc())

    def failing_replace(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(expectations.os, "replace", failing_replace)
    changes = update(tmp_path, [make_record()])
    assert [(c.status, c.detail) for c in changes] == [
        ("error", f"{path}: not written ([Errno 28] No space left on device)")]
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["ch01_performance_basics.json"]


def test_update_mode_must_be_all_or_new(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="update mode"):
        update(tmp_path, [make_record()], mode="some")


def test_store_preload_fails_on_a_corrupt_file_before_any_get(tmp_path: Path) -> None:
    write_doc(path_for(tmp_path, "h100", "ch01_performance_basics"), valid_doc())
    write_doc(path_for(tmp_path, "h100", "ch09_broken"), "{")
    with pytest.raises(ExpectationsError, match="ch09_broken.json: not valid JSON"):
        Store(tmp_path, "h100").preload()


def test_store_get_returns_recorded_entries_and_none_otherwise(tmp_path: Path) -> None:
    write_doc(path_for(tmp_path, "h100", "ch01_performance_basics"), valid_doc())
    write_doc(path_for(tmp_path, "a100", "ch01_performance_basics"), {**valid_doc(), "hardware": "a100"})
    store = Store(tmp_path, "h100")
    store.preload()
    entry = store.get("ch01_performance_basics", "other")
    assert entry == {"speedup": 2.0, "noise_margin": 0.1, "note": "hand-written"}
    entry["speedup"] = 99.0
    assert store.get("ch01_performance_basics", "other")["speedup"] == 2.0
    assert store.get("ch01_performance_basics", "absent") is None
    assert store.get("ch05_not_recorded", "other") is None


def test_store_preload_of_a_hardware_without_files_is_fine(tmp_path: Path) -> None:
    store = Store(tmp_path, "b200")
    store.preload()
    assert store.get("ch01_performance_basics", "anything") is None


def test_stale_lists_unused_entries_of_known_chapters_only(tmp_path: Path) -> None:
    entry = {"speedup": 2.0, "noise_margin": 0.1}
    write_doc(path_for(tmp_path, "h100", "ch01_a"), {"format": 1, "entries": {"kept": entry, "gone": entry,
                                                                              "also_gone": entry}})
    write_doc(path_for(tmp_path, "h100", "ch02_b"), {"format": 1, "entries": {"unseen": entry}})
    known = {"ch01_a": {"kept", "never_recorded"}, "ch03_without_file": {"x"}}
    path = path_for(tmp_path, "h100", "ch01_a")
    assert stale(tmp_path, "h100", known) == [(path, "also_gone"), (path, "gone")]


@pytest.fixture(autouse=True)
def no_commit_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """A device run names its commit in AIPERF_COMMIT; these tests read git itself unless they set it."""
    monkeypatch.delenv("AIPERF_COMMIT", raising=False)


def test_git_commit_outside_a_repository_is_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert git_commit(tmp_path) == (None, None)


def test_git_commit_without_git_is_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert git_commit(tmp_path) == (None, None)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_commit_reports_the_short_hash_and_dirtiness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(name, raising=False)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    (tmp_path / "a.txt").write_text("a\n")
    for args in (["init", "-q"], ["add", "a.txt"], ["commit", "-q", "-m", "one"]):
        subprocess.run(["git", *args], cwd=tmp_path, env=env, check=True, capture_output=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tmp_path, env=env, check=True,
                          capture_output=True, text=True).stdout.strip()
    assert git_commit(tmp_path) == (head, False)
    (tmp_path / "a.txt").write_text("b\n")
    assert git_commit(tmp_path) == (head, True)


def test_mode_all_replaces_the_pooled_recordings_with_this_one(tmp_path: Path) -> None:
    update(tmp_path, [make_record(speedup=8.35)])
    update(tmp_path, [make_record(speedup=7.72)], mode="add")
    update(tmp_path, [make_record(speedup=9.0)], mode="all")
    entry = load(tmp_path / "h100" / "ch01_performance_basics.json")[make_record()["key"]]
    assert [r["speedup"] for r in entry["recordings"]] == [9.0]
    assert (entry["speedup"], entry["margin_basis"]) == (9.0, "this recording")


def test_mode_add_pools_recordings_median_speedup_and_a_band_that_holds_them_all(tmp_path: Path) -> None:
    for speedup in (8.0, 8.8, 7.6):
        changes = update(tmp_path, [make_record(speedup=speedup, noise_margin=0.03)], mode="add")
    entry = load(tmp_path / "h100" / "ch01_performance_basics.json")[make_record()["key"]]
    assert [r["speedup"] for r in entry["recordings"]] == [8.0, 8.8, 7.6]
    assert entry["speedup"] == 8.0
    assert entry["noise_margin"] == pytest.approx(0.1)  # 8.8 / 8.0 - 1 beats 8.0 / 7.6 - 1 = 0.0526
    assert entry["margin_basis"] == "spread of 3 recordings"
    assert entry["ci"] == [7.6, 8.8]  # the recordings' range, which holds the pooled median
    assert [(c.status, c.old, c.new) for c in changes] == [("pooled (3)", 8.4, 8.0)]  # 8.4: median of 8.0, 8.8


def test_pooled_recordings_that_agree_keep_their_median_in_run_noise(tmp_path: Path) -> None:
    for speedup, margin in ((8.0, 0.05), (8.1, 0.07), (7.95, 0.04)):
        update(tmp_path, [make_record(speedup=speedup, noise_margin=margin)], mode="add")
    entry = load(tmp_path / "h100" / "ch01_performance_basics.json")[make_record()["key"]]
    assert (entry["noise_margin"], entry["margin_basis"]) == (0.05, "median in-run noise of 3 recordings")


def test_pooling_keeps_only_the_latest_recordings(tmp_path: Path) -> None:
    from pytest_aiperf.expectations import MAX_RECORDINGS

    for i in range(MAX_RECORDINGS + 3):
        update(tmp_path, [make_record(speedup=2.0 + i / 100)], mode="add")
    entry = load(tmp_path / "h100" / "ch01_performance_basics.json")[make_record()["key"]]
    assert [r["speedup"] for r in entry["recordings"]] == [2.0 + i / 100 for i in range(3, MAX_RECORDINGS + 3)]


def test_pooling_an_entry_written_without_recordings_counts_it_as_one(tmp_path: Path) -> None:
    from pytest_aiperf.expectations import pool

    old = {"speedup": 4.0, "noise_margin": 0.02, "baseline": {"median_ms": 4.0}, "optimized": {"median_ms": 1.0},
           "provenance": {"date": "d", "commit": "c"}}
    new = {"speedup": 5.0, "noise_margin": 0.02, "baseline": {"median_ms": 5.0, "samples": 9},
           "optimized": {"median_ms": 1.0, "samples": 9},
           "recordings": [{"speedup": 5.0, "noise_margin": 0.02, "baseline_ms": 5.0, "optimized_ms": 1.0}]}
    pooled = pool(old, new)
    assert pooled["speedup"] == 4.5 and pooled["noise_margin"] == pytest.approx(4.5 / 4.0 - 1)
    assert pooled["baseline"] == {"median_ms": 4.5, "samples": 9}


def test_recordings_that_are_not_a_list_of_speedups_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "h100" / "ch01_x.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"format": 1, "entries": {"a-fp32-1": {"speedup": 2.0, "noise_margin": 0.1,
                                                                        "recordings": [{"speedup": "fast"}]}}}))
    with pytest.raises(ExpectationsError, match=r"entry 'a-fp32-1' has recordings\[0\] speedup 'fast', expected a "
                                                "positive number"):
        load(path)


def test_a_checkout_without_git_takes_its_commit_from_aiperf_commit(tmp_path, monkeypatch):
    from pytest_aiperf.expectations import git_commit

    monkeypatch.setenv("AIPERF_COMMIT", "abc1234")
    assert git_commit(tmp_path) == ("abc1234", None)


# ---------------------------------------------------------------- deep validation: every field an entry uses

GOOD = {"speedup": 2.0, "noise_margin": 0.1}


@pytest.mark.parametrize(("entry", "problem"), [
    ({**GOOD, "noise_margin": 1e308}, "has noise_margin 1e+308, expected a number from 0 to 1"),
    ('{"speedup": 2.0, "noise_margin": Infinity}', "has noise_margin inf"),
    ({**GOOD, "noise_margin": 1.0000001}, "has noise_margin 1.0000001"),
    ({**GOOD, "ci": [1.9]}, "has ci [1.9], expected null or two positive numbers"),
    ({**GOOD, "ci": [0, 2.1]}, "has ci [0, 2.1]"),
    ({**GOOD, "ci": "narrow"}, "has ci 'narrow'"),
    ({**GOOD, "baseline": "fast"}, "has baseline 'fast', expected an object"),
    ({**GOOD, "optimized": [0.3]}, "has optimized [0.3], expected an object"),
    ({**GOOD, "baseline": {"median_ms": -1.0}}, "has baseline median_ms -1.0, expected null or a positive number"),
    ({**GOOD, "optimized": {"median_ms": "0.3"}}, "has optimized median_ms '0.3'"),
    ({**GOOD, "provenance": "h100 box"}, "has provenance 'h100 box', expected an object"),
    ({**GOOD, "provenance": {"launch_us": 0}}, "has provenance launch_us 0"),
    ({**GOOD, "provenance": {"gpu": 7}}, "has provenance gpu 7, expected a string"),
    ({**GOOD, "recordings": {"speedup": 2.0}}, "has recordings {'speedup': 2.0}, expected a list"),
    ({**GOOD, "recordings": ["fast"]}, "has recordings[0] 'fast', expected an object"),
    ({**GOOD, "recordings": [{"speedup": 2.0}, {"speedup": -2.0}]}, "has recordings[1] speedup -2.0"),
    ({**GOOD, "recordings": [{"speedup": 2.0, "launch_us": "7.7"}]}, "has recordings[0] launch_us '7.7'"),
    ({**GOOD, "recordings": [{"speedup": 2.0, "baseline_ms": 0.0}]}, "has recordings[0] baseline_ms 0.0"),
    ({**GOOD, "recordings": [{"speedup": 2.0, "optimized_ms": -1}]}, "has recordings[0] optimized_ms -1"),
    ({**GOOD, "recordings": [{"speedup": 2.0, "noise_margin": -0.1}]}, "has recordings[0] noise_margin -0.1"),
    ({**GOOD, "timing": 1}, "has timing 1, expected a string"),
    ({**GOOD, "known_loss": ""}, "has known_loss '', expected the declared reason"),
])
def test_every_field_an_entry_uses_is_validated_naming_the_file_and_the_entry(tmp_path: Path, entry: Any,
                                                                               problem: str) -> None:
    path = tmp_path / "h100" / "ch01.json"
    text = entry if isinstance(entry, str) else json.dumps(entry)
    write_doc(path, f'{{"format": 1, "entries": {{"ok-fp32-1": {json.dumps(GOOD)}, "bad-fp32-1": {text}}}}}')
    with pytest.raises(ExpectationsError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}: entry 'bad-fp32-1' {problem}")
    assert info.value.key == "bad-fp32-1"


def test_max_margin_is_a_band_of_half_to_twice_the_expectation_and_is_itself_allowed(tmp_path: Path) -> None:
    assert expectations.MAX_MARGIN == 1.0
    path = tmp_path / "h100" / "ch01.json"
    write_doc(path, {"format": 1, "entries": {"a-fp32-1": {**GOOD, "noise_margin": 1.0, "ci": None,
                                                           "baseline": {"median_ms": None}, "timing": "my-timer",
                                                           "known_loss": "slower on purpose"}}})
    assert load(path)["a-fp32-1"]["noise_margin"] == 1.0


@pytest.mark.parametrize(("doc", "problem"), [
    ({"format": 1, "hardware": 100, "entries": {}}, "hardware is 100, expected a string"),
    ({"format": 1, "chapter": None, "entries": {}}, "chapter is None, expected a string"),
])
def test_hardware_and_chapter_fields_must_be_strings_even_when_the_path_is_not_given(tmp_path: Path, doc: Any,
                                                                                       problem: str) -> None:
    path = tmp_path / "h100" / "ch01.json"
    write_doc(path, doc)
    with pytest.raises(ExpectationsError, match=problem):
        load(path)


def test_a_lenient_store_passes_over_malformed_entries_and_a_strict_one_names_them(tmp_path: Path) -> None:
    path = path_for(tmp_path, "h100", "ch01_performance_basics")
    write_doc(path, valid_doc({"other": dict(GOOD), "bad-fp32-1": {**GOOD, "provenance": "x"}}))
    lenient = Store(tmp_path, "h100", lenient=True)
    lenient.preload()
    assert lenient.get("ch01_performance_basics", "bad-fp32-1") is None
    assert lenient.get("ch01_performance_basics", "other") == GOOD
    with pytest.raises(ExpectationsError, match="entry 'bad-fp32-1' has provenance 'x'"):
        Store(tmp_path, "h100").preload()
    with pytest.raises(ExpectationsError, match="entry 'bad-fp32-1' has provenance 'x'"):
        Store(tmp_path, "h100").get("ch01_performance_basics", "other")


def test_a_lenient_store_still_refuses_a_document_that_cannot_be_read(tmp_path: Path) -> None:
    write_doc(path_for(tmp_path, "h100", "ch01_performance_basics"), {"format": 1, "entries": []})
    with pytest.raises(ExpectationsError, match="'entries' is list"):
        Store(tmp_path, "h100", lenient=True).preload()


@pytest.mark.parametrize("mode", ["all", "new", "add"])
def test_update_repairs_the_malformed_entry_of_a_recorded_case_and_leaves_other_malformed_entries_as_they_were(
        tmp_path: Path, mode: str) -> None:
    key = make_record()["key"]
    untouched = {"speedup": float("nan"), "noise_margin": 0.1, "note": "hand-edited"}
    path = path_for(tmp_path, "h100", "ch01_performance_basics")
    write_doc(path, expectations.dumps(valid_doc({key: {**GOOD, "baseline": "fast"}, "other-fp32-1": untouched})))
    block = json.dumps({"other-fp32-1": untouched}, indent=2, sort_keys=True)[2:-2]
    assert block.replace("\n", "\n  ") in path.read_text()
    changes = update(tmp_path, [make_record()], mode=mode)
    assert [(c.status, c.old, c.old_margin) for c in changes] == [("repaired", None, None)]
    assert changes[0].detail == "replaced the malformed entry, which has baseline 'fast', expected an object"
    assert block.replace("\n", "\n  ") in path.read_text()
    doc = json.loads(path.read_text())
    assert doc["entries"][key]["speedup"] == make_record()["speedup"]
    assert doc["entries"]["other-fp32-1"]["note"] == "hand-edited"


def test_pooling_into_an_entry_with_a_wrong_type_is_repaired_not_an_attribute_error(tmp_path: Path) -> None:
    path = path_for(tmp_path, "h100", "ch01_performance_basics")
    write_doc(path, valid_doc({make_record()["key"]: {**GOOD, "provenance": ["h100"]}}))
    changes = update(tmp_path, [make_record(speedup=3.0)], mode="add")
    assert [(c.status, c.new) for c in changes] == [("repaired", 3.0)]
    assert [r["speedup"] for r in load(path)[make_record()["key"]]["recordings"]] == [3.0]


# ---------------------------------------------------------------- refusals: timing backends, GPUs, losses, margins

def test_a_write_that_fails_for_one_file_is_an_error_and_the_other_files_are_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_replace = os.replace

    def full_disk_for_ch01(src: Any, dst: Any) -> None:
        if Path(dst).name.startswith("ch01"):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(expectations.os, "replace", full_disk_for_ch01)
    changes = update(tmp_path, [make_record("x-fp32-8"), make_record("y-fp32-8", chapter="ch02_x")])
    assert [(c.chapter, c.status) for c in changes] == [("ch01_performance_basics", "error"), ("ch02_x", "new")]
    assert "No space left on device" in changes[0].detail
    assert sorted(p.name for p in (tmp_path / "h100").iterdir()) == ["ch02_x.json"]


def test_a_folder_that_cannot_be_created_is_an_error_not_an_exception(tmp_path: Path) -> None:
    root = tmp_path / "expectations"
    root.write_text("a file where the folder should be\n")
    changes = update(root, [make_record()])
    assert [c.status for c in changes] == ["error"]
    assert changes[0].detail.startswith(f"{path_for(root, 'h100', 'ch01_performance_basics')}: not written (")


# ---------------------------------------------------------------- stale entries in every folder of the hardware

def test_stale_looks_in_the_hardware_folder_and_every_multi_gpu_folder_of_it(tmp_path: Path) -> None:
    entry = dict(GOOD)
    for folder, keys in (("h100", ["gone", "kept"]), ("2x_h100", ["gone-2gpus", "kept-2gpus"]),
                         ("8x_h100", ["gone-8gpus"]), ("2x_h200", ["other-hw-2gpus"]), ("x_h100", ["odd"])):
        write_doc(path_for(tmp_path, folder, "ch04_dist"), {"format": 1, "entries": {k: entry for k in keys}})
    known = {"ch04_dist": {"kept", "kept-2gpus"}}
    assert stale(tmp_path, "h100", known) == [
        (path_for(tmp_path, "2x_h100", "ch04_dist"), "gone-2gpus"),
        (path_for(tmp_path, "8x_h100", "ch04_dist"), "gone-8gpus"),
        (path_for(tmp_path, "h100", "ch04_dist"), "gone"),
    ]


def test_stale_raises_for_a_corrupt_file_and_lists_a_malformed_entry(tmp_path: Path) -> None:
    write_doc(path_for(tmp_path, "h100", "ch01_a"), {"format": 1, "entries": {"bad": {"speedup": "x"}}})
    assert stale(tmp_path, "h100", {"ch01_a": set()}) == [(path_for(tmp_path, "h100", "ch01_a"), "bad")]
    write_doc(path_for(tmp_path, "2x_h100", "ch01_a"), "{")
    with pytest.raises(ExpectationsError, match=r"2x_h100/ch01_a.json: not valid JSON"):
        stale(tmp_path, "h100", {"ch01_a": set()})
