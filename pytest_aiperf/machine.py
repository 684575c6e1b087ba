"""The machine: which GPU this is (its expectations key), which GPUs this process may use, and what the GPU
was doing while it was measured (clocks, temperature, power, throttle reasons, energy).

Which GPUs exist, their names and their telemetry come from NVML (module ``pynvml``): NVML does not create a CUDA
context, so the xdist controller can ask before any worker starts, and a worker's CUDA is never initialized on the
wrong device. Two questions are torch's: ``lacks_capability`` reads the current device's compute capability
(asked only in the measuring process, for a case that declares one), and ``software_versions`` reads torch's
version without initializing CUDA. NVML is imported inside functions so that importing the plugin stays fast;
without a driver the NVML functions answer "nothing" (``[]``, ``None``, ``{"count": 0}``) instead of raising.
"""

from __future__ import annotations

import os
import importlib.metadata
import platform
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

HARDWARE_KEYS = {
    "NVIDIA H100 80GB HBM3": "h100",
    "NVIDIA H100 PCIe": "h100-pcie",
    "NVIDIA H100 NVL": "h100-nvl",
    "NVIDIA H200": "h200",
    "NVIDIA H200 NVL": "h200-nvl",
    "NVIDIA B200": "b200",
    "NVIDIA GB200": "gb200",
    "NVIDIA A100-SXM4-80GB": "a100",
    "NVIDIA A100-SXM4-40GB": "a100",
    "NVIDIA A100 80GB PCIe": "a100-pcie",
    "NVIDIA A100-PCIE-40GB": "a100-pcie",
    "NVIDIA L40S": "l40s",
    "NVIDIA L4": "l4",
    "NVIDIA GeForce RTX 4090": "rtx4090",
}

THROTTLE_BITS = (
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal"),
    (0x40, "hw_thermal"),
    (0x80, "hw_power_brake"),
    (0x100, "display_clocks"),
)
SEVERE_THROTTLE = frozenset({"hw_slowdown", "sw_thermal", "hw_thermal", "hw_power_brake"})
TELEMETRY_RANGES = ("sm_clock_mhz", "mem_clock_mhz", "temp_c", "power_w")


def hardware_key(gpu_name: str) -> str:
    """The expectations folder of a GPU model. Form factors stay apart (an H100 PCIe is not an H100 SXM),
    because their clocks and power limits differ and so do their speedups. Unknown models get a slug."""
    name = gpu_name.strip()
    if name in HARDWARE_KEYS:
        return HARDWARE_KEYS[name]
    words = re.sub(r"\bnvidia\b", " ", name.lower())
    return re.sub(r"[^a-z0-9]+", "-", words).strip("-") or "unknown-gpu"


def is_known(gpu_name: str) -> bool:
    """Whether ``hardware_key`` found the name in its table (False: the key is a guessed slug)."""
    return gpu_name.strip() in HARDWARE_KEYS


@dataclass(frozen=True)
class Gpu:
    """A GPU as NVML sees it: ``index`` is NVML's (PCI order), not the CUDA ordinal inside this process."""

    index: int
    uuid: str
    name: str


def select_visible(all_gpus: list[Gpu], cvd: str | None) -> list[Gpu]:
    """The GPUs a CUDA process would see, in its order, given ``CUDA_VISIBLE_DEVICES`` (NVML ignores it).

    ``None`` (unset) means all; ``""`` means none. Entries are NVML indices or ``GPU-`` UUIDs or unique UUID
    prefixes. As in the CUDA driver, the list ends at the first entry that names no GPU (``"0,7,1"`` on a
    two-GPU machine is just GPU 0); a GPU named twice is kept once. Integer entries assume CUDA's order matches
    NVML's (true with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` or identical GPUs); UUIDs are unambiguous.
    """
    if cvd is None:
        return list(all_gpus)
    chosen: list[Gpu] = []
    for raw in cvd.split(","):
        entry = raw.strip()
        if entry.isdigit():
            matches = [gpu for gpu in all_gpus if gpu.index == int(entry)]
        elif entry.startswith("GPU-") and len(entry) > len("GPU-"):
            matches = [gpu for gpu in all_gpus if gpu.uuid.startswith(entry)]
        else:
            matches = []
        if len(matches) != 1:
            break
        if matches[0] not in chosen:
            chosen.append(matches[0])
    return chosen


@contextmanager
def _nvml() -> Iterator[Any]:
    """The initialized ``pynvml`` module, or None when the package or the driver is missing."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no package, no driver library, no device: all mean "no NVML here"
        yield None
        return
    try:
        yield pynvml
    finally:
        pynvml.nvmlShutdown()


def _all_gpus(nvml: Any) -> list[Gpu]:
    gpus = []
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        gpus.append(Gpu(index, _text(nvml.nvmlDeviceGetUUID(handle)), _text(nvml.nvmlDeviceGetName(handle))))
    return gpus


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def visible_gpus() -> list[Gpu]:
    """The GPUs this process may use (NVML's list filtered by ``CUDA_VISIBLE_DEVICES``); ``[]`` without NVML."""
    with _nvml() as nvml:
        if nvml is None:
            return []
        try:
            gpus = _all_gpus(nvml)
        except Exception:  # a driver error while enumerating: report no usable GPU rather than crash the session
            return []
    return select_visible(gpus, os.environ.get("CUDA_VISIBLE_DEVICES"))


def static_info() -> dict[str, Any]:
    """Facts that do not change between runs on one machine, for pytest-benchmark's ``machine_info``:
    ``{"count", "names", "driver", "cuda_driver"}`` of the visible GPUs, or ``{"count": 0}``."""
    gpus = visible_gpus()
    if not gpus:
        return {"count": 0}
    driver = cuda_driver = None
    with _nvml() as nvml:
        if nvml is not None:
            driver = _query(lambda: _text(nvml.nvmlSystemGetDriverVersion()))
            version = _query(nvml.nvmlSystemGetCudaDriverVersion)
            cuda_driver = None if version is None else f"{version // 1000}.{version % 1000 // 10}"
    return {"count": len(gpus), "names": [gpu.name for gpu in gpus], "driver": driver, "cuda_driver": cuda_driver}


def lacks_capability(needed: tuple[int, int] | None, have: tuple[int, int] | None = None) -> str | None:
    """Why the current CUDA device cannot run a case that needs compute capability ``needed``, or None if it can.
    ``have`` defaults to the current device's capability (only asked when ``needed`` is set)."""
    if needed is None:
        return None
    if have is None:
        import torch

        have = tuple(torch.cuda.get_device_capability())
    if tuple(have) >= tuple(needed):
        return None
    return (f"needs compute capability {needed[0]}.{needed[1]} or later (this GPU has {have[0]}.{have[1]}): it uses "
            f"instructions or hardware units that GPU lacks; see its kernel module")


def _query(read: Any) -> Any:
    """One NVML reading, or None where the device or driver does not support it."""
    try:
        return read()
    except Exception:  # NVMLError_NotSupported, _FunctionNotFound, _GpuIsLost, ...: the value is unknown
        return None


def decode_throttle(mask: int) -> list[str]:
    """Names of the set clock-event (throttle) bits, lowest bit first; unknown bits read ``unknown_0x...``."""
    names = [name for bit, name in THROTTLE_BITS if mask & bit]
    known = sum(bit for bit, _ in THROTTLE_BITS)
    rest = mask & ~known
    names += [f"unknown_{1 << b:#x}" for b in range(rest.bit_length()) if rest >> b & 1]
    return names


def summarize(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """``[min, max]`` of each reading over the samples (None where no sample had it) and the sorted union
    of throttle reasons: the telemetry a record carries."""
    summary: dict[str, Any] = {}
    for key in TELEMETRY_RANGES:
        values = [s[key] for s in samples if s.get(key) is not None]
        summary[key] = [min(values), max(values)] if values else None
    summary["throttle"] = sorted({reason for s in samples for reason in s.get("throttle") or ()})
    return summary


class Telemetry:
    """Readings of one GPU through NVML, taken around measurements; holds NVML open until ``close``."""

    summarize = staticmethod(summarize)

    def __init__(self, nvml: Any, handle: Any, gpu: Gpu) -> None:
        self._nvml = nvml
        self._handle = handle
        self.gpu = gpu
        self.uuid = gpu.uuid
        reasons = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
        self._reasons = reasons or nvml.nvmlDeviceGetCurrentClocksThrottleReasons

    @classmethod
    def open(cls, uuid: str | None) -> Telemetry | None:
        """Telemetry of the GPU with this UUID (or unique UUID prefix), or of the first visible GPU when
        ``uuid`` is None; None without NVML or without such a GPU."""
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception:  # no package or no driver: no telemetry
            return None
        try:
            gpus = _all_gpus(pynvml)
            if uuid is None:
                chosen = select_visible(gpus, os.environ.get("CUDA_VISIBLE_DEVICES"))[:1]
            else:
                chosen = select_visible(gpus, uuid)
            if chosen:
                return cls(pynvml, pynvml.nvmlDeviceGetHandleByIndex(chosen[0].index), chosen[0])
        except Exception:  # a driver error while enumerating: no telemetry rather than a crashed session
            pass
        pynvml.nvmlShutdown()
        return None

    def close(self) -> None:
        """Release this object's hold on NVML; the object must not be used afterwards."""
        if self._nvml is not None:
            self._nvml.nvmlShutdown()
            self._nvml = None

    def sample(self) -> dict[str, Any]:
        """Current SM and memory clocks (MHz), temperature (C), power (W) and throttle reason names;
        a reading the device does not support is None (throttle: ``[]``)."""
        nvml, handle = self._nvml, self._handle
        power_mw = _query(lambda: nvml.nvmlDeviceGetPowerUsage(handle))
        mask = _query(lambda: self._reasons(handle))
        return {
            "sm_clock_mhz": _query(lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM)),
            "mem_clock_mhz": _query(lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM)),
            "temp_c": self._temperature(),
            "power_w": None if power_mw is None else power_mw / 1000.0,
            "throttle": [] if mask is None else decode_throttle(int(mask)),
        }

    def _temperature(self) -> int | None:
        nvml, handle = self._nvml, self._handle
        reading = _query(lambda: nvml.nvmlDeviceGetTemperatureV(handle, nvml.NVML_TEMPERATURE_GPU))
        if reading is None:
            reading = _query(lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
        return reading

    def energy_mj(self) -> float | None:
        """The GPU's energy counter in millijoules since the driver loaded (difference two readings to get the
        energy of what ran between them); None where the device has no counter."""
        reading = _query(lambda: self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        return None if reading is None else float(reading)


def host_cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str | None:
    """The host CPU's model name (launch-bound arms run at its speed); None where the system does not say."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        return None
    return platform.processor() or None


def software_versions() -> dict[str, str | None]:
    """Versions of torch, triton, the CUDA runtime torch was built with, and Python; None where missing.
    Importing torch here does not initialize CUDA."""
    versions: dict[str, str | None] = {"torch": None, "triton": None, "cuda": None,
                                       "python": platform.python_version()}
    try:
        import torch

        versions["torch"] = str(torch.__version__)
        versions["cuda"] = torch.version.cuda
    except Exception:  # not installed, or a broken install: the version is unknown
        pass
    try:
        versions["triton"] = importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        pass
    return versions
