"""Cold-start samples: each call of an arm is a fresh Python process that builds the case's inputs and times the
arm's first call to its (synchronized) output, for lessons whose cost is the first call: compilation, autotuning,
caches.

``ColdStart`` is the timing backend of a ``goal="cold_start"`` case. Its ``time_call`` runs ``python -m
pytest_aiperf.coldstart`` with a JSON request on stdin (the arm and the case's ``inputs`` by module and qualified
name, the shape, dtype, seed and device); the child imports torch and the arm, builds the inputs, and reports the
wall time of the first call alone: interpreter start and the imports before it are not counted, but what the first
call imports on its own (torch.compile's compiler stack, on its first use) is, in both arms alike. Every
sample gets empty compile caches of its own (``TORCHINDUCTOR_CACHE_DIR``, ``TRITON_CACHE_DIR``), so nothing one
sample compiled makes the next one warm; what an arm is meant to reuse it reads from ``AIPERF_COLD_START_DIR``, a
folder of the case that its ``prepare`` (run once, in its own process, before the samples) fills, such as saved
compile artifacts.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

DIR_ENV = "AIPERF_COLD_START_DIR"


class ColdStartError(RuntimeError):
    """A cold-start child process failed; the message holds its output."""


def qualified(fn: Callable[..., Any]) -> str:
    """``module:qualname`` of a module-level function, which a fresh process can import."""
    module, name = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not module or not name or "<" in name:
        raise ValueError(f"{fn!r} cannot be imported by a fresh process: a cold-start arm, its inputs and its prepare "
                         f"are module-level functions")
    return f"{module}:{name}"


def resolve(name: str) -> Callable[..., Any]:
    module, _, qualname = name.partition(":")
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


class ColdStart:
    """The timing backend of a cold-start case: ``time_call(arm, args)`` is one fresh process's first call."""

    name = "cold-process"
    l2_bytes = 0

    def __init__(self, param: Any, device: str, rootdir: Path, timeout_s: float = 3600.0) -> None:
        self.param, self.device, self.rootdir, self.timeout_s = param, device, Path(rootdir), timeout_s
        self.folder = Path(tempfile.mkdtemp(prefix="aiperf-cold-start-"))

    def request(self, fn: Callable[..., Any]) -> dict[str, Any]:
        case = self.param.case
        return {"call": qualified(fn), "inputs": qualified(case.inputs), "shape": list(self.param.shape),
                "dtype": self.param.dtype, "seed": self.param.seeds(1)[0], "device": self.device,
                "rootdir": str(self.rootdir)}

    def run(self, fn: Callable[..., Any], *, args: bool = True) -> float:
        """The first-call ms of ``fn`` in a fresh process with empty compile caches (``args``: called with the
        inputs; else with the case's folder, as ``prepare`` is)."""
        caches = tempfile.mkdtemp(prefix="aiperf-cold-caches-", dir=self.folder)
        env = {**os.environ, DIR_ENV: str(self.folder), "TORCHINDUCTOR_CACHE_DIR": os.path.join(caches, "inductor"),
               "TRITON_CACHE_DIR": os.path.join(caches, "triton"),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(self.rootdir), os.environ.get("PYTHONPATH")]))}
        request = {**self.request(fn), "with_inputs": args}
        try:
            done = subprocess.run([sys.executable, "-m", "pytest_aiperf.coldstart"], input=json.dumps(request),
                                  capture_output=True, text=True, env=env, timeout=self.timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ColdStartError(f"{request['call']} did not finish within {self.timeout_s:g} s") from exc
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            raise ColdStartError(f"{request['call']} failed in a fresh process (exit {done.returncode}):\n"
                                 f"{done.stdout[-4000:]}{done.stderr[-4000:]}")
        return float(json.loads(lines[-1])["first_call_ms"])

    def prepare(self) -> None:
        """Run the case's ``prepare(folder)`` once, in its own process, before any sample."""
        if self.param.case.prepare is not None:
            self.run(self.param.case.prepare, args=False)

    def flush(self) -> None:
        return None

    def sync(self) -> None:
        return None

    def time_call(self, fn: Callable[..., Any], args: Sequence[Any], hide_dispatch: bool = True) -> tuple[float, float]:
        ms = self.run(fn)
        return ms, ms

    def peak_bytes(self, fn: Callable[..., Any], args: Sequence[Any], reserved: bool = False) -> int | None:
        return None

    def dispatch_note(self, fn: Callable[..., Any]) -> None:
        return None


def _child(request: dict[str, Any]) -> float:
    """In the fresh process: build the inputs, then time the first call to its synchronized output."""
    sys.path.insert(0, request["rootdir"])
    import torch

    call = resolve(request["call"])
    sync = torch.cuda.synchronize if request["device"].startswith("cuda") else (lambda: None)
    if request["with_inputs"]:
        inputs = list(resolve(request["inputs"])(tuple(request["shape"]), request["dtype"], request["seed"],
                                                 request["device"]))
    else:
        inputs = [os.environ[DIR_ENV]]
    sync()
    start = time.perf_counter()
    out = call(*inputs)
    sync()
    elapsed = (time.perf_counter() - start) * 1e3
    del out
    return elapsed


if __name__ == "__main__":
    print(json.dumps({"first_call_ms": _child(json.loads(sys.stdin.read()))}), flush=True)
