"""One xdist worker per GPU: how many workers ``-n auto`` starts, which GPU each worker sees, and when a worker
count is a usage error. Pure functions of the visible GPUs (``machine.visible_gpus``: NVML's list filtered by an
outer ``CUDA_VISIBLE_DEVICES``); the xdist hooks in ``plugin`` apply them.

A worker is pinned through its execnet spec's environment, which is set before the worker imports anything, so
CUDA initializes seeing only its GPU. xdist restarts a crashed worker from the same spec, so the replacement keeps
the crashed worker's GPU. The spec also gives the worker its share of the host's CPUs (``SLOT_ENV``): workers that
measured host-side work on the same CPUs would time each other's threads.

Cases are handed out longest first (``longest_first``), by the durations of the last run in pytest's cache: a long
case that starts last keeps one worker busy while the others sit idle, so the run ends with it.
"""

from __future__ import annotations

from typing import Any, Mapping, MutableMapping, Sequence

from pytest_aiperf.machine import Gpu

SLOT_ENV = "AIPERF_WORKER_SLOT"


def auto_count(gpus: Sequence[Gpu], environ: Mapping[str, str]) -> int | None:
    """Workers for ``-n auto``: one per visible GPU. None (xdist decides: its CPU count) where the user set
    ``PYTEST_XDIST_AUTO_NUM_WORKERS`` or no GPU is visible."""
    if environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS") or not gpus:
        return None
    return len(gpus)


def count_error(workers: int, gpus: Sequence[Gpu], share: bool) -> str | None:
    """Why ``workers`` xdist workers cannot each have a GPU of their own, or None when they can (or when there is
    no GPU: every case is then verified on the CPU, and nothing is timed on a device)."""
    if share or not gpus or workers <= len(gpus):
        return None
    return (f"-n {workers} starts more xdist workers than the {len(gpus)} visible GPU(s) "
            f"({', '.join(gpu.uuid for gpu in gpus)}): two workers would share a GPU and time each other's kernels. "
            f"Use -n auto (one worker per GPU), -n {len(gpus)} or fewer, or --aiperf-share-gpus to let workers "
            f"share GPUs and take turns measuring")


def pin(envs: Sequence[MutableMapping[str, Any]], gpus: Sequence[Gpu]) -> None:
    """Give worker i the GPU ``gpus[i % len(gpus)]`` by UUID (a spec that already names its
    ``CUDA_VISIBLE_DEVICES``, e.g. ``--tx popen//env:CUDA_VISIBLE_DEVICES=1``, keeps it), in PCI bus order."""
    if not gpus:
        return
    for i, env in enumerate(envs):
        env.setdefault("CUDA_VISIBLE_DEVICES", gpus[i % len(gpus)].uuid)
        env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
        env.setdefault(SLOT_ENV, f"{i}/{len(envs)}")


def slot(environ: Mapping[str, str]) -> tuple[int, int] | None:
    """``(i, n)``, this process being worker i of n (``SLOT_ENV`` is ``"i/n"``), or None outside a pinned worker
    or where the value is malformed (then the process behaves as the only one)."""
    try:
        index, count = (int(part) for part in environ.get(SLOT_ENV, "").split("/"))
    except ValueError:
        return None
    return (index, count) if 0 <= index < count else None


def cpu_share(allowed: Sequence[int], environ: Mapping[str, str]) -> list[int]:
    """The CPUs of ``allowed`` that this worker may use: its slot's contiguous part (``SLOT_ENV`` is ``"i/n"``,
    worker i of n), or all of them outside a pinned worker or where there are fewer CPUs than workers."""
    cpus = sorted(allowed)
    worker = slot(environ)
    if worker is None or worker[1] > len(cpus):
        return cpus
    index, count = worker
    size, extra = divmod(len(cpus), count)
    start = index * size + min(index, extra)
    return cpus[start:start + size + (index < extra)]


def longest_first(nodeids: Sequence[str], seconds: Mapping[str, float]) -> list[int]:
    """The order (indices into ``nodeids``) in which xdist should hand tests out: tests without a recorded duration
    first (a new case may be the longest), in collection order, then the others by descending duration (ties in
    collection order). The order is a pure function of its arguments: every worker must collect the same list."""
    known = [i for i, nodeid in enumerate(nodeids) if nodeid in seconds]
    unknown = [i for i, nodeid in enumerate(nodeids) if nodeid not in seconds]
    return unknown + sorted(known, key=lambda i: -seconds[nodeids[i]])


def merged_durations(last: Mapping[str, float], now: Mapping[str, float]) -> dict[str, float]:
    """The durations to keep for the next run: this run's, and the last run's for tests this run did not run."""
    return {**last, **now}


def valid_durations(stored: Any) -> dict[str, float]:
    """The seconds per test id read back from pytest's cache. What is not a number of seconds per test id (a
    hand-edited or foreign cache value) is dropped rather than trusted: the order is only a hint."""
    if not isinstance(stored, dict):
        return {}
    return {k: float(v) for k, v in stored.items()
            if isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0}
