"""The device a run measures on: which hardware key it files results under (any process, from NVML), and in the
measuring process the resources opened once on first use: the timing backend, NVML telemetry, the CUDA build of
the collected chapters, the host CPUs the measuring thread keeps to, the measured ceilings, and the provenance
every record carries.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from pytest_aiperf import build, clocks, host, machine, measure, workers
from pytest_aiperf.options import Options


class Skip(Exception):
    """The case cannot be measured here; the message says why (the plugin turns it into a pytest skip)."""


class NoDevice(RuntimeError):
    """A CUDA device was asked for (``--aiperf-backend=cuda``) and this process has none: a failure, not a skip, so
    a CI job that lost its GPU does not go green."""


def hardware_key(options: Options, gpus: list[machine.Gpu], custom_backend: Any = None) -> str:
    """The expectations key of this run: ``--aiperf-hardware``, a custom backend's, the first GPU's, else "cpu"."""
    if options.hardware:
        return options.hardware
    if custom_backend is not None:
        return getattr(custom_backend, "hardware", "custom")
    return machine.hardware_key(gpus[0].name) if gpus and options.backend != "cpu" else "cpu"


def visible_gpus(options: Options) -> list[machine.Gpu]:
    """The GPUs this process may use (NVML), or none where the host clock was asked for."""
    return machine.visible_gpus() if options.backend in ("auto", "cuda") else []


def timing_name(options: Options, gpus: list[machine.Gpu], custom_backend: Any = None) -> str:
    """The clock that will time this run, for the report header."""
    if custom_backend is not None:
        return custom_backend.name
    if options.backend == "cpu":
        return clocks.CpuClock.name
    return clocks.CudaEvents.name if gpus else "none (no CUDA device)"


class Device:
    """The measuring process's device, opened on the first ``backend()`` call. ``kernel_dirs`` gives the folders
    of CUDA sources of the collected chapters, built before the first case."""

    def __init__(self, options: Options, rootdir: Path, custom_backend: Any = None,
                 kernel_dirs: Callable[[], Iterable[Path]] = tuple) -> None:
        self.options, self.rootdir, self.custom_backend = options, rootdir, custom_backend
        self._kernel_dirs = kernel_dirs
        self._backend: clocks.TimingBackend | None = None
        self._opened = False
        self.telemetry: machine.Telemetry | None = None
        self.ceilings: dict[str, Any] | None = None
        self.build_note: str | None = None
        self._provenance: dict[str, Any] | None = None

    @functools.cached_property
    def gpus(self) -> list[machine.Gpu]:
        return visible_gpus(self.options)

    @functools.cached_property
    def hardware(self) -> str:
        return hardware_key(self.options, self.gpus, self.custom_backend)

    def hardware_for(self, gpus: int) -> str:
        """The key of ``gpus`` of this hardware used together: ``h200``, ``2x_h200``."""
        return self.hardware if gpus == 1 else f"{gpus}x_{self.hardware}"

    def backend(self) -> clocks.TimingBackend | None:
        """The timing backend (None: no CUDA device, so cases are verified and not timed)."""
        if not self._opened:
            self._opened = True
            if self.custom_backend is not None:
                self._backend = self.custom_backend
            elif self.options.backend == "cpu":
                self._backend = clocks.CpuClock()
            else:
                import torch

                if torch.cuda.is_available():
                    self._backend = clocks.CudaEvents()
                    self._open_cuda()
        if self._backend is None and self.options.backend == "cuda":
            raise NoDevice("--aiperf-backend=cuda, but torch sees no CUDA device in this process")
        return self._backend

    def _open_cuda(self) -> None:
        import torch

        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        uuid = str(getattr(props, "uuid", "") or "")
        uuid = uuid if not uuid or uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
        self.telemetry = machine.Telemetry.open(uuid or None)
        share = functools.partial(workers.cpu_share, environ=os.environ)
        self.build_note = self._prebuild()  # before pin_host narrows the CPUs, which nvcc would inherit
        pin = host.pin_host(self._backend, share) if self.options.host_cpus == "fast" else None
        self.ceilings = measure.measure_ceilings(self._backend)
        static = machine.static_info()
        self._provenance = {"gpu": props.name, "gpu_uuid": uuid or None, "sm_count": props.multi_processor_count,
                            "l2_bytes": self._backend.l2_bytes, "driver": static.get("driver"),
                            "host_cpus": pin.describe() if pin else "not pinned",
                            "launch_us": pin.best_us if pin else None,
                            "host_cpu_model": machine.host_cpu_model(), **machine.software_versions()}

    def _prebuild(self) -> str | None:
        """Build every CUDA source of the collected chapters at once, in parallel, before the first case; a
        source that fails here fails only the cases that use it, when they load it."""
        sources = sorted({cu for folder in self._kernel_dirs() for cu in Path(folder).glob("**/*.cu")})
        if not sources:
            return None
        start = time.perf_counter()
        try:
            results = build.build_all(sources, include_dirs=[self.rootdir / "kernels"])
        except build.BuildError as exc:
            return f"CUDA build not run: {exc}"
        failed = sum(isinstance(r, BaseException) for r in results.values())
        return (f"CUDA build: {len(sources)} sources in {time.perf_counter() - start:.1f} s"
                f"{f', {failed} failed' if failed else ''}")

    def provenance(self) -> dict[str, Any]:
        """What every record of this process is stamped with: the GPU, the host and the software."""
        return self._provenance or {"gpu": None, "gpu_uuid": None, "sm_count": None, "l2_bytes": None,
                                    "driver": None, **machine.software_versions()}

    def telemetry_summary(self, samples: list[dict[str, Any]]) -> dict[str, Any] | None:
        """A record's telemetry: the readings' ranges and throttle reasons, and the UUID of the GPU read."""
        if not samples:
            return None
        return {**machine.summarize(samples), "gpu_uuid": self.telemetry.uuid if self.telemetry else None}
