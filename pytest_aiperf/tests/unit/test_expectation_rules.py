"""What an expectations update may record: the refusals (host timings under a GPU key, another GPU's key, pooling
across timing backends or GPU models, a loss without known_loss, margins past MAX_MARGIN) and the margins shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_aiperf.expectations import Change, entry_from_record, load, path_for
from pytest_aiperf.tests.unit.test_expectations import DATE, GOOD, PROVENANCE, make_record, update, valid_doc, write_doc


def host_record(key: str = "batched_matmul-fp32-64x128x128", **overrides: Any) -> dict[str, Any]:
    """What ``--aiperf-backend=cpu`` measures: the host clock, no GPU in the provenance."""
    record = make_record(key, **overrides)
    record.update(backend="cpu-clock", device="cpu", provenance={**PROVENANCE, "gpu": None})
    return record


@pytest.mark.parametrize("mode", ["all", "new", "add"])
def test_host_timings_are_refused_under_a_gpu_key_in_every_mode(tmp_path: Path, mode: str) -> None:
    update(tmp_path, [make_record(speedup=3.0, noise_margin=0.165)])
    path = path_for(tmp_path, "h100", "ch01_performance_basics")
    before = path.read_bytes()
    changes = update(tmp_path, [host_record(speedup=1.3), host_record("fresh-fp32-8", speedup=1.3)], mode=mode)
    assert [(c.key, c.status) for c in changes] == [(make_record()["key"], "refused"), ("fresh-fp32-8", "refused")]
    assert changes[0].detail == ("timed by cpu-clock on the host, but filed under the GPU key h100: a GPU's "
                                 "expectations hold only timings taken on that GPU")
    assert (changes[0].old, changes[0].old_margin, changes[0].new) == (3.0, 0.165, 1.3)
    assert path.read_bytes() == before


def test_host_timings_are_recorded_under_a_key_that_names_no_gpu(tmp_path: Path) -> None:
    changes = update(tmp_path, [host_record(hardware="cpu"), host_record(hardware="2x_cpu")])
    assert [c.status for c in changes] == ["new", "new"]
    assert load(path_for(tmp_path, "cpu", "ch01_performance_basics"))[make_record()["key"]]["timing"] == "cpu-clock"


@pytest.mark.parametrize("mode", ["all", "new", "add"])
@pytest.mark.parametrize(("hardware", "gpu", "key"), [("h100", "NVIDIA H200", "h200"),
                                                      ("2x_h100", "NVIDIA H200", "h200"),
                                                      ("h100", "NVIDIA H100 PCIe", "h100-pcie")])
def test_a_record_measured_on_another_gpus_key_is_refused_in_every_mode(tmp_path: Path, mode: str, hardware: str,
                                                                        gpu: str, key: str) -> None:
    record = make_record(hardware=hardware)
    record["provenance"]["gpu"] = gpu
    changes = update(tmp_path, [record], mode=mode)
    assert [c.status for c in changes] == ["refused"]
    assert [c.detail for c in changes] == [
        f"measured on {gpu} (key {key}), not h100: an expectation holds only measurements of the GPU "
        "it is filed under"]
    assert not (tmp_path / hardware).exists()


def test_a_record_on_its_own_gpu_or_an_unknown_one_is_recorded(tmp_path: Path) -> None:
    unknown = make_record(hardware="my-rig")
    unknown["provenance"]["gpu"] = "Prototype Accelerator 9"
    changes = update(tmp_path, [make_record(hardware="2x_h200"), make_record(hardware="h200"), unknown])
    assert [(c.hardware, c.status) for c in changes] == [("2x_h200", "new"), ("h200", "new"), ("my-rig", "new")]


def test_mode_add_refuses_to_pool_another_timing_backend_and_mode_all_replaces(tmp_path: Path) -> None:
    update(tmp_path, [host_record(hardware="cpu", speedup=2.0)])
    custom = host_record(hardware="cpu", speedup=2.1)
    custom["backend"] = "my-timer"
    changes = update(tmp_path, [custom], mode="add")
    assert [c.status for c in changes] == ["refused"]
    assert [c.detail for c in changes] == [
        "timed by my-timer, but the entry's recordings by cpu-clock: mode add pools recordings of one "
        "timing backend only (mode all replaces them)"]
    assert [c.status for c in update(tmp_path, [custom], mode="all")] == ["updated"]


@pytest.mark.parametrize(("provenance_gpu", "status"), [("Prototype Accelerator 9", "refused"), (None, "pooled (2)")])
def test_an_entry_written_before_the_timing_field_was_timed_on_the_gpu_its_provenance_names(
        tmp_path: Path, provenance_gpu: str | None, status: str) -> None:
    path = path_for(tmp_path, "prototype-accelerator-9", "ch01_performance_basics")
    legacy = {**GOOD, "provenance": {"gpu": provenance_gpu}}
    write_doc(path, {**valid_doc({make_record()["key"]: legacy}), "hardware": "prototype-accelerator-9"})
    changes = update(tmp_path, [host_record(hardware="prototype-accelerator-9", speedup=2.0)], mode="add")
    assert [c.status for c in changes] == [status]
    if status == "refused":
        assert changes[0].detail.startswith("timed by cpu-clock, but the entry's recordings by cuda-events")


def test_mode_add_refuses_to_pool_another_gpu_model_of_the_same_key(tmp_path: Path) -> None:
    first, second = make_record(hardware="a100"), make_record(hardware="a100", speedup=3.0)
    first["provenance"]["gpu"], second["provenance"]["gpu"] = "NVIDIA A100-SXM4-80GB", "NVIDIA A100-SXM4-40GB"
    update(tmp_path, [first])
    changes = update(tmp_path, [second], mode="add")
    assert [c.status for c in changes] == ["refused"]
    assert [c.detail for c in changes] == [
        "measured on NVIDIA A100-SXM4-40GB, but the entry's recordings on NVIDIA A100-SXM4-80GB: mode "
        "add pools recordings of one GPU model only (mode all replaces them)"]
    assert [c.status for c in update(tmp_path, [second], mode="all")] == ["updated"]


@pytest.mark.parametrize("mode", ["all", "new", "add"])
def test_a_loss_below_the_floor_is_refused_unless_the_case_declares_it(tmp_path: Path, mode: str) -> None:
    changes = update(tmp_path, [make_record(speedup=0.51)], mode=mode)
    assert [c.status for c in changes] == ["refused"]
    assert [c.detail for c in changes] == [
        "0.51x is below min_speedup 1.20x: a loss is recorded only for a case that declares known_loss "
        "with its reason"]
    assert not (tmp_path / "h100").exists()
    declared = {**make_record(speedup=0.51), "known_loss": "the fused kernel spills on this GPU"}
    assert [c.status for c in update(tmp_path, [declared], mode=mode)] == ["new"]
    entry = load(path_for(tmp_path, "h100", "ch01_performance_basics"))[make_record()["key"]]
    assert (entry["speedup"], entry["known_loss"]) == (0.51, "the fused kernel spills on this GPU")


def test_a_loss_just_below_the_floor_shows_enough_digits_to_tell_them_apart(tmp_path: Path) -> None:
    changes = update(tmp_path, [make_record(speedup=1.199)])
    assert changes[0].detail.startswith("1.199x is below min_speedup 1.200x")


def test_change_keeps_its_fields_in_order_and_adds_margins_and_detail_with_defaults() -> None:
    change = Change("h100", "ch01", "a-fp32-1", "new", None, 2.0)
    assert (change.old_margin, change.new_margin, change.detail) == (None, None, "")
    assert Change("h", "c", "k", "refused", 1.0, 2.0, 0.1, 2.2, "why").detail == "why"


def test_a_pool_whose_margin_exceeds_max_margin_is_refused_and_not_written(tmp_path: Path) -> None:
    update(tmp_path, [make_record(speedup=1.5, noise_margin=0.05)])
    path = path_for(tmp_path, "h100", "ch01_performance_basics")
    before = path.read_bytes()
    (change,) = update(tmp_path, [make_record(speedup=5.0, noise_margin=0.05)], mode="add")
    assert (change.status, change.old, change.new) == ("refused", 1.5, 3.25)
    assert path.read_bytes() == before
    assert change.old_margin == 0.05
    assert change.new_margin == pytest.approx(3.25 / 1.5 - 1)
    assert change.detail == ("the recordings disagree by more than 2x: pooled, 2 recordings from 1.50x to 5.00x "
                             "would need a margin of +-117%, wider than +-100%; re-measure, or replace them with "
                             "mode all")
    assert path.read_bytes() == before


def test_a_recording_noisier_than_max_margin_is_refused_not_raised(tmp_path: Path) -> None:
    changes = update(tmp_path, [make_record(noise_margin=1e308), make_record("calm-fp32-8")])
    assert [(c.key, c.status) for c in changes] == [(make_record()["key"], "refused"), ("calm-fp32-8", "new")]
    assert changes[0].detail.startswith("its noise margin +-1e310% is wider than +-100%")
    with pytest.raises(ValueError, match="wider than MAX_MARGIN"):
        entry_from_record(make_record(noise_margin=1.5), date=DATE, commit=None, dirty=None)


def test_a_record_without_its_timing_backend_is_an_invalid_argument(tmp_path: Path) -> None:
    record = make_record()
    del record["backend"]
    with pytest.raises(ValueError, match="backend is None, expected a name"):
        update(tmp_path, [make_record("fine-fp32-8"), record])
    assert not tmp_path.joinpath("h100").exists()


# ---------------------------------------------------------------- I/O failures are changes, never exceptions
