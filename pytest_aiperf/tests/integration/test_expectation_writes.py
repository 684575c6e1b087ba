"""Expectation updates against a real filesystem: concurrent writers in separate processes, symlinks, permission bits,
dangling links, and writes that the system refuses."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_aiperf.expectations import ExpectationsError, Store, apply_updates, dumps, load, path_for
from pytest_aiperf.record import arm

CHAPTER = "ch01_performance_basics"
WRITERS, ROUNDS = 7, 4


def make_record(key: str, speedup: float = 2.0, chapter: str = CHAPTER) -> dict[str, Any]:
    return {
        "key": key, "chapter": chapter, "hardware": "h100", "goal": "speed", "rounds": 4, "device": "cuda",
        "backend": "cuda-events", "min_speedup": 1.2, "speedup": speedup, "ci": [1.9, 2.1], "noise_margin": 0.04,
        "baseline": arm([1.0, 1.1], median_ms=1.05, q1_ms=1.0, q3_ms=1.1, wall_median_ms=1.1),
        "optimized": arm([0.5, 0.55], median_ms=0.52, q1_ms=0.5, q3_ms=0.55, wall_median_ms=0.6),
        "provenance": {"gpu": "NVIDIA H100 80GB HBM3", "gpu_uuid": "GPU-1"},
    }


def update(root: Path, records: list[dict], mode: str = "all") -> list:
    return apply_updates(root, records, mode=mode, date="2026-11-21T13:05:00+00:00", commit="abc1234", dirty=False)


WRITER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from pytest_aiperf.expectations import apply_updates

    root, gate, writer, rounds = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    template = json.loads((gate.parent / "record.json").read_text())
    (gate.parent / f"ready-{writer}").touch()
    while not gate.exists():
        time.sleep(0.001)
    for turn in range(rounds):
        records = [dict(template, key=f"own-w{writer}-r{turn}"),
                   dict(template, key=f"pooled-r{turn}", speedup=2.0 + writer / 100)]
        changes = apply_updates(root, records, mode="add", date=f"w{writer}r{turn}", commit=None, dirty=None)
        unexpected = [c for c in changes if c.status != "new" and not c.status.startswith("pooled")]
        if unexpected:
            sys.exit(f"writer {writer}: {unexpected}")
""")

READER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from pytest_aiperf.expectations import load

    path, done = Path(sys.argv[1]), Path(sys.argv[2])
    reads = 0
    while not done.exists():
        load(path, hardware="h100", chapter="ch01_performance_basics")
        reads += 1
    print(reads)
""")


def test_concurrent_writers_in_separate_processes_lose_nothing_and_readers_see_whole_files(tmp_path: Path) -> None:
    root, control = tmp_path / "expectations", tmp_path / "control"
    control.mkdir()
    (control / "record.json").write_text(json.dumps(make_record("template")))
    gate, done = control / "start", control / "done"
    path = path_for(root, "h100", CHAPTER)
    update(root, [make_record("seed")])
    reader = subprocess.Popen([sys.executable, "-c", READER, str(path), str(done)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(gate), str(i), str(ROUNDS)],
                                stderr=subprocess.PIPE, text=True) for i in range(WRITERS)]
    deadline = time.monotonic() + 60
    while len(list(control.glob("ready-*"))) < WRITERS and time.monotonic() < deadline:
        time.sleep(0.01)
    gate.touch()
    outcomes = [(w.communicate(timeout=60)[1], w.returncode) for w in writers]
    failures = [error for error, returncode in outcomes if returncode != 0]
    done.touch()
    reads, reader_error = reader.communicate(timeout=60)
    assert failures == []
    assert reader.returncode == 0, reader_error
    assert int(reads) > 0
    entries = json.loads(path.read_text())["entries"]
    assert set(entries) == {"seed", *(f"own-w{i}-r{r}" for i in range(WRITERS) for r in range(ROUNDS)),
                            *(f"pooled-r{r}" for r in range(ROUNDS))}
    for turn in range(ROUNDS):
        pooled = entries[f"pooled-r{turn}"]["recordings"]
        assert sorted(r["speedup"] for r in pooled) == [2.0 + i / 100 for i in range(WRITERS)]
    assert [p.name for p in path.parent.iterdir()] == [path.name]


@pytest.mark.parametrize("linked", ["file", "folder"])
def test_an_update_writes_through_a_symlink_which_stays_a_link_and_the_file_keeps_its_mode(tmp_path: Path,
                                                                                          linked: str) -> None:
    root, shared = tmp_path / "expectations", tmp_path / "shared" / "h100"
    target = shared / f"{CHAPTER}.json"
    shared.mkdir(parents=True)
    target.write_text(dumps({"format": 1, "hardware": "h100", "chapter": CHAPTER,
                             "entries": {"other": {"speedup": 2.0, "noise_margin": 0.1}}}))
    target.chmod(0o640)
    path = path_for(root, "h100", CHAPTER)
    link = path if linked == "file" else path.parent
    link.parent.mkdir(parents=True)
    pointer = os.path.relpath(target if linked == "file" else shared, link.parent)
    link.symlink_to(pointer)
    changes = update(root, [make_record("new-fp32-8")])
    assert [c.status for c in changes] == ["new"]
    assert link.is_symlink() and os.readlink(link) == pointer
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert set(load(target)) == {"other", "new-fp32-8"}
    assert sorted(p.name for p in shared.iterdir()) == [target.name]


def test_a_new_file_gets_the_mode_the_umask_allows(tmp_path: Path) -> None:
    before = os.umask(0o027)
    try:
        update(tmp_path, [make_record("a-fp32-8")])
    finally:
        os.umask(before)
    assert stat.S_IMODE(path_for(tmp_path, "h100", CHAPTER).stat().st_mode) == 0o640


@pytest.mark.parametrize("linked", ["file", "folder"])
def test_a_dangling_symlink_is_an_error_naming_the_link_and_its_target_when_reading_and_updating(
        tmp_path: Path, linked: str) -> None:
    path = path_for(tmp_path, "h100", CHAPTER)
    link = path if linked == "file" else path.parent
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(tmp_path / "moved-away")
    problem = f"{link}: is a symlink to '{tmp_path / 'moved-away'}', which does not exist"
    with pytest.raises(ExpectationsError) as info:
        load(path)
    assert str(info.value).startswith(problem)
    with pytest.raises(ExpectationsError, match="which does not exist"):
        Store(tmp_path, "h100").get(CHAPTER, "a-fp32-8")
    with pytest.raises(ExpectationsError, match="which does not exist"):
        Store(tmp_path, "h100", lenient=True).preload()
    changes = update(tmp_path, [make_record("a-fp32-8")])
    assert [c.status for c in changes] == ["error"] and changes[0].detail.startswith(problem)
    assert link.is_symlink() and not (tmp_path / "moved-away").exists()


FULL_DISK = textwrap.dedent("""
    import json, resource, signal, sys
    from pathlib import Path
    from pytest_aiperf.expectations import apply_updates

    root, limit = Path(sys.argv[1]), int(sys.argv[2])
    records = json.loads((root.parent / "records.json").read_text())
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    changes = apply_updates(root, records, mode="all", date="d", commit=None, dirty=None)
    print(json.dumps([[c.chapter, c.status, c.detail] for c in changes]))
""")


def test_a_write_the_system_refuses_is_an_error_change_and_the_other_files_are_written(tmp_path: Path) -> None:
    root, limit = tmp_path / "expectations", 16384
    big = path_for(root, "h100", CHAPTER)
    big.parent.mkdir(parents=True)
    before = dumps({"format": 1, "entries": {"other": {"speedup": 2.0, "noise_margin": 0.1, "note": "x" * limit}}})
    big.write_text(before)
    records = [make_record("a-fp32-8"), make_record("b-fp32-8", chapter="ch02_small")]
    (tmp_path / "records.json").write_text(json.dumps(records))
    run = subprocess.run([sys.executable, "-c", FULL_DISK, str(root), str(limit)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    changes = json.loads(run.stdout)
    assert [c[:2] for c in changes] == [[CHAPTER, "error"], ["ch02_small", "new"]]
    assert changes[0][2].startswith(f"{big}: not written ([Errno 27] File too large")
    assert big.read_text() == before
    assert sorted(p.name for p in big.parent.iterdir()) == [big.name, "ch02_small.json"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_folder_is_an_error_change_not_an_exception(tmp_path: Path) -> None:
    path = path_for(tmp_path, "h100", CHAPTER)
    path.parent.mkdir(parents=True)
    path.parent.chmod(0o555)
    try:
        changes = update(tmp_path, [make_record("a-fp32-8")])
    finally:
        path.parent.chmod(0o755)
    assert [c.status for c in changes] == ["error"] and "Permission denied" in changes[0].detail
    assert list(path.parent.iterdir()) == []
