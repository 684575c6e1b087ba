"""The measuring process's device, without a GPU: the hardware key, the telemetry a record carries, and what a run
that asked for CUDA does where there is none."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_aiperf import benchexport
from pytest_aiperf.device import Device, NoDevice, hardware_key
from pytest_aiperf.machine import Gpu
from pytest_aiperf.options import Options

H200 = [Gpu(0, "GPU-aaaa", "NVIDIA H200")]


class FakeTelemetry:
    uuid = "GPU-aaaa"


def test_a_records_telemetry_names_the_gpu_it_was_read_from_and_the_export_carries_it(tmp_path: Path) -> None:
    device = Device(Options(), tmp_path)
    device.telemetry = FakeTelemetry()
    tele = device.telemetry_summary([{"sm_clock_mhz": 1980, "throttle": []}, {"sm_clock_mhz": 1755, "throttle": []}])
    assert tele["gpu_uuid"] == "GPU-aaaa" and tele["sm_clock_mhz"] == [1755, 1980]
    record = {"telemetry": tele, "baseline": {"median_ms": 1.0}, "optimized": {"median_ms": 0.5}}
    assert benchexport.extra_info(record, "optimized")["gpu_uuid"] == "GPU-aaaa"
    assert device.telemetry_summary([]) is None


@pytest.mark.parametrize(("options", "gpus", "key"), [(Options(), H200, "h200"), (Options(), [], "cpu"),
                                                      (Options(backend="cpu"), H200, "cpu"),
                                                      (Options(hardware="lab-7"), H200, "lab-7")])
def test_the_hardware_key_comes_from_the_option_else_the_gpu_else_the_host_clock(options, gpus, key) -> None:
    assert hardware_key(options, gpus) == key


def test_a_run_that_asked_for_cuda_fails_where_this_process_has_none(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(NoDevice, match="--aiperf-backend=cuda, but torch sees no CUDA device"):
        Device(Options(backend="cuda"), tmp_path).backend()
    assert Device(Options(backend="auto"), tmp_path).backend() is None
