"""machine.py: hardware keys, CUDA_VISIBLE_DEVICES, throttle decoding, telemetry summaries, and the NVML
boundary (driven by a fake ``pynvml`` module so that it runs without a GPU)."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

from pytest_aiperf import machine
from pytest_aiperf.machine import (
    SEVERE_THROTTLE,
    Gpu,
    Telemetry,
    decode_throttle,
    hardware_key,
    is_known,
    select_visible,
    summarize,
)


@pytest.mark.parametrize(("name", "key"), [
    ("NVIDIA H100 80GB HBM3", "h100"),
    ("NVIDIA H100 PCIe", "h100-pcie"),
    ("NVIDIA H100 NVL", "h100-nvl"),
    ("NVIDIA H200", "h200"),
    ("NVIDIA H200 NVL", "h200-nvl"),
    ("NVIDIA B200", "b200"),
    ("NVIDIA GB200", "gb200"),
    ("NVIDIA A100-SXM4-80GB", "a100"),
    ("NVIDIA A100-SXM4-40GB", "a100"),
    ("NVIDIA A100 80GB PCIe", "a100-pcie"),
    ("NVIDIA A100-PCIE-40GB", "a100-pcie"),
    ("NVIDIA L40S", "l40s"),
    ("NVIDIA L4", "l4"),
    ("NVIDIA GeForce RTX 4090", "rtx4090"),
])
def test_hardware_key_maps_each_known_nvml_name(name: str, key: str) -> None:
    assert hardware_key(name) == key
    assert is_known(name)


@pytest.mark.parametrize(("name", "slug"), [
    ("NVIDIA RTX A6000", "rtx-a6000"),
    ("Tesla V100-SXM2-16GB", "tesla-v100-sxm2-16gb"),
    ("NVIDIA  GeForce RTX 5090 (D)", "geforce-rtx-5090-d"),
    ("NVIDIA", "unknown-gpu"),
])
def test_hardware_key_slugs_unknown_names_and_is_known_says_so(name: str, slug: str) -> None:
    assert hardware_key(name) == slug
    assert not is_known(name)


def test_form_factors_never_share_a_key() -> None:
    assert len({hardware_key(n) for n in ("NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H100 NVL")}) == 3


GPUS = [
    Gpu(0, "GPU-aaaa1111-0000-0000-0000-000000000000", "NVIDIA H100 80GB HBM3"),
    Gpu(1, "GPU-aaaa2222-0000-0000-0000-000000000000", "NVIDIA H100 80GB HBM3"),
    Gpu(2, "GPU-bbbb3333-0000-0000-0000-000000000000", "NVIDIA H100 80GB HBM3"),
]


@pytest.mark.parametrize(("cvd", "indices"), [
    (None, [0, 1, 2]),
    ("", []),
    ("2,0", [2, 0]),
    (" 1 , 2 ", [1, 2]),
    ("GPU-bbbb3333-0000-0000-0000-000000000000", [2]),
    ("GPU-bbbb,0", [2, 0]),
    ("0,7,1", [0]),
    ("GPU-aaaa,1", []),
    ("-1,0", []),
    ("1,1,2", [1, 2]),
    ("MIG-1234", []),
])
def test_select_visible_follows_cuda_visible_devices(cvd: str | None, indices: list[int]) -> None:
    assert [gpu.index for gpu in select_visible(GPUS, cvd)] == indices


def test_decode_throttle_names_each_bit_in_order() -> None:
    assert decode_throttle(0) == []
    assert decode_throttle(0x1) == ["gpu_idle"]
    assert decode_throttle(0x4 | 0x40) == ["sw_power_cap", "hw_thermal"]
    assert decode_throttle(0x1FF) == ["gpu_idle", "applications_clocks", "sw_power_cap", "hw_slowdown",
                                      "sync_boost", "sw_thermal", "hw_thermal", "hw_power_brake", "display_clocks"]


def test_decode_throttle_keeps_unknown_bits_visible() -> None:
    assert decode_throttle(0x8 | 0x200) == ["hw_slowdown", "unknown_0x200"]


def test_severe_throttle_is_the_four_slowdowns_only() -> None:
    assert SEVERE_THROTTLE == {"hw_slowdown", "sw_thermal", "hw_thermal", "hw_power_brake"}
    assert "sw_power_cap" not in SEVERE_THROTTLE


def test_summarize_gives_min_max_and_sorted_union() -> None:
    samples = [
        {"sm_clock_mhz": 1980, "mem_clock_mhz": 2619, "temp_c": 41, "power_w": 120.5, "throttle": ["gpu_idle"]},
        {"sm_clock_mhz": 1755, "mem_clock_mhz": 2619, "temp_c": 58, "power_w": 690.25,
         "throttle": ["sw_power_cap", "gpu_idle"]},
        {"sm_clock_mhz": 1830, "mem_clock_mhz": 2619, "temp_c": 55, "power_w": None, "throttle": []},
    ]
    assert summarize(samples) == {
        "sm_clock_mhz": [1755, 1980], "mem_clock_mhz": [2619, 2619], "temp_c": [41, 58],
        "power_w": [120.5, 690.25], "throttle": ["gpu_idle", "sw_power_cap"],
    }
    assert Telemetry.summarize(samples) == summarize(samples)


def test_summarize_of_nothing_is_all_unknown() -> None:
    assert summarize([]) == {"sm_clock_mhz": None, "mem_clock_mhz": None, "temp_c": None, "power_w": None,
                             "throttle": []}


class NotSupported(Exception):
    """Stands in for pynvml.NVMLError_NotSupported."""


def fake_nvml(*, init_fails: bool = False, energy: bool = True) -> types.ModuleType:
    """A pynvml with the three GPUs above; GPU 2 reads a hot, throttled state; counts init/shutdown."""
    nvml = types.ModuleType("pynvml")
    nvml.NVML_CLOCK_SM, nvml.NVML_CLOCK_MEM, nvml.NVML_TEMPERATURE_GPU = 1, 2, 0
    nvml.calls = {"init": 0, "shutdown": 0}

    def init() -> None:
        if init_fails:
            raise OSError("NVML Shared Library Not Found")
        nvml.calls["init"] += 1

    def shutdown() -> None:
        nvml.calls["shutdown"] += 1

    def energy_mj(handle: int) -> int:
        if not energy:
            raise NotSupported("Not Supported")
        return 123456789

    def temperature_v(handle: int, sensor: int) -> int:
        raise NotSupported("Function Not Found")

    nvml.nvmlInit, nvml.nvmlShutdown = init, shutdown
    nvml.nvmlDeviceGetCount = lambda: len(GPUS)
    nvml.nvmlDeviceGetHandleByIndex = lambda i: i
    nvml.nvmlDeviceGetUUID = lambda h: GPUS[h].uuid.encode()
    nvml.nvmlDeviceGetName = lambda h: GPUS[h].name
    nvml.nvmlSystemGetDriverVersion = lambda: "580.159.04"
    nvml.nvmlSystemGetCudaDriverVersion = lambda: 13000
    nvml.nvmlDeviceGetClockInfo = lambda h, kind: {1: 1980 - 100 * h, 2: 2619}[kind]
    nvml.nvmlDeviceGetTemperatureV = temperature_v
    nvml.nvmlDeviceGetTemperature = lambda h, sensor: 40 + 10 * h
    nvml.nvmlDeviceGetPowerUsage = lambda h: 350125
    nvml.nvmlDeviceGetCurrentClocksThrottleReasons = lambda h: 0x44 if h == 2 else 0x1
    nvml.nvmlDeviceGetTotalEnergyConsumption = energy_mj
    return nvml


def test_visible_gpus_reads_nvml_and_honours_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = fake_nvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-bbbb3333,0")
    assert machine.visible_gpus() == [GPUS[2], GPUS[0]]
    assert nvml.calls == {"init": 1, "shutdown": 1}


def test_without_a_driver_nothing_is_visible_and_nothing_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(init_fails=True))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert machine.visible_gpus() == []
    assert machine.static_info() == {"count": 0}
    assert Telemetry.open(None) is None


def test_static_info_lists_visible_gpus_and_driver_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert machine.static_info() == {"count": 2, "names": ["NVIDIA H100 80GB HBM3"] * 2,
                                     "driver": "580.159.04", "cuda_driver": "13.0"}


def test_telemetry_samples_the_chosen_gpu_with_the_old_throttle_call(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = fake_nvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    telemetry = Telemetry.open("GPU-bbbb3333-0000-0000-0000-000000000000")
    assert telemetry is not None and telemetry.uuid == GPUS[2].uuid
    assert telemetry.sample() == {"sm_clock_mhz": 1780, "mem_clock_mhz": 2619, "temp_c": 60,
                                  "power_w": 350.125, "throttle": ["sw_power_cap", "hw_thermal"]}
    assert telemetry.energy_mj() == 123456789.0
    telemetry.close()
    assert nvml.calls == {"init": 1, "shutdown": 1}


def test_telemetry_prefers_clocks_event_reasons_when_present(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = fake_nvml()
    nvml.nvmlDeviceGetCurrentClocksEventReasons = lambda h: 0x8
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    telemetry = Telemetry.open(None)
    assert telemetry is not None and telemetry.gpu == GPUS[1]
    assert telemetry.sample()["throttle"] == ["hw_slowdown"]


def test_telemetry_energy_is_none_where_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(energy=False))
    telemetry = Telemetry.open(GPUS[0].uuid)
    assert telemetry is not None
    assert telemetry.energy_mj() is None


def test_telemetry_open_of_an_absent_uuid_is_none_and_releases_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = fake_nvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    assert Telemetry.open("GPU-ffff") is None
    assert nvml.calls == {"init": 1, "shutdown": 1}


def test_software_versions_reports_python_and_never_raises() -> None:
    versions = machine.software_versions()
    assert set(versions) == {"torch", "triton", "cuda", "python"}
    assert versions["python"] == ".".join(map(str, sys.version_info[:3]))


def test_importing_the_modules_does_not_import_torch_or_pynvml() -> None:
    code = ("import sys, pytest_aiperf.machine, pytest_aiperf.expectations; "
            "assert 'torch' not in sys.modules and 'pynvml' not in sys.modules, sorted(sys.modules)")
    root = Path(__file__).resolve().parents[3]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_host_cpu_model_reads_the_first_model_name(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9454 48-Core Processor\n"
                       "processor\t: 1\nmodel name\t: something else\n")
    assert machine.host_cpu_model(str(cpuinfo)) == "AMD EPYC 9454 48-Core Processor"


def test_host_cpu_model_of_an_unreadable_file_is_unknown(tmp_path: Path) -> None:
    assert machine.host_cpu_model(str(tmp_path / "missing")) is None


def test_a_case_needing_a_newer_gpu_is_refused_with_both_capabilities_named() -> None:
    why = machine.lacks_capability((9, 0), have=(8, 0))
    assert why is not None and "9.0" in why and "8.0" in why, why


def test_a_gpu_at_or_above_the_needed_capability_runs_the_case() -> None:
    assert machine.lacks_capability((9, 0), have=(9, 0)) is None
    assert machine.lacks_capability((8, 9), have=(9, 0)) is None
    assert machine.lacks_capability(None) is None
