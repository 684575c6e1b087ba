"""Build CUDA sources under ``kernels/`` into callables that take torch tensors: compile once, cached by content.

A source is compiled by ``nvcc`` straight into a shared library (no torch headers: a few seconds per file instead
of the ~47 s of a torch extension) and loaded with ctypes. Launchers follow ``include/aiperf.cuh``: tensors become
device pointers, ints ``int64_t``, floats ``double``, torch's current stream is appended, and a nonzero return is a
``CudaError`` naming the launcher. The cache key covers the source, the local headers it includes, the compiler's
version, the flags and the target architecture, so a warm run rebuilds nothing and an edit rebuilds only its file.
A source that fails to compile fails the cases that use it, with the compiler's message; the others run.

Processes share the cache (xdist starts one worker per GPU, and every worker builds every source at start): a
source is compiled under an exclusive lock on ``<library>.lock`` beside its library, so the first process compiles
it and the others wait and load that library instead of running the same nvcc again. ``build_all`` starts each
worker at a different point of the source list, so workers mostly compile different sources side by side.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from pytest_aiperf import workers

try:
    import fcntl
except ImportError:  # Windows: no flock; each process builds on its own (the write is still atomic)
    fcntl = None  # type: ignore[assignment]

FLAGS = ("-std=c++17", "-O3", "-lineinfo", "-shared", "-Xcompiler", "-fPIC")
TIMEOUT_S = 600
INCLUDE = Path(__file__).resolve().parent / "include"
_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)
_LOCK = threading.Lock()
_BUILT: dict[Path, Path | BaseException] = {}


class BuildError(Exception):
    """A CUDA source that did not compile; the message holds the command and the compiler's output."""


class CudaError(RuntimeError):
    """A launcher returned a CUDA error (bad launch configuration, no kernel image for this device, ...)."""


def nvcc() -> str:
    """The CUDA compiler: ``$CUDACXX``, else ``nvcc`` on PATH, else ``$CUDA_HOME/bin/nvcc``."""
    for candidate in (os.environ.get("CUDACXX"), shutil.which("nvcc"),
                      str(Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "bin" / "nvcc")):
        if candidate and Path(candidate).is_file():
            return candidate
    raise BuildError("nvcc not found: set CUDACXX or CUDA_HOME, or put nvcc on PATH")


def arch() -> str:
    """``sm_XY`` of the current device (``sm_90a`` on Hopper, so wgmma and the bulk tensor copy are available);
    ``$AIPERF_CUDA_ARCH`` overrides it (for example to compile-check on a machine without a GPU)."""
    if os.environ.get("AIPERF_CUDA_ARCH"):
        return os.environ["AIPERF_CUDA_ARCH"]
    import torch

    major, minor = torch.cuda.get_device_capability()
    return f"sm_{major}{minor}{'a' if major >= 9 else ''}"


def cache_dir() -> Path:
    return Path(os.environ.get("AIPERF_CACHE_DIR") or Path.home() / ".cache" / "pytest-aiperf") / "cuda"


def _sources(path: Path, include_dirs: Iterable[Path]) -> list[Path]:
    """The file and every local header it includes, transitively (``#include "..."`` found beside it or in the
    include dirs)."""
    seen: list[Path] = []
    todo = [path]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.append(current)
        for name in _INCLUDE.findall(current.read_text(encoding="utf-8")):
            for folder in (current.parent, *include_dirs):
                if (folder / name).is_file():
                    todo.append((folder / name).resolve())
                    break
    return seen


def command(source: Path, output: Path, target: str, include_dirs: Iterable[Path]) -> list[str]:
    number = target[3:]
    return [nvcc(), *FLAGS, f"-gencode=arch=compute_{number},code={target}",
            *(f"-I{folder}" for folder in include_dirs), "-o", str(output), str(source)]


def _with_convention(include_dirs: Iterable[Path]) -> list[Path]:
    """The given include dirs, then the plugin's own (``aiperf.cuh``, the calling convention)."""
    return [*(Path(d).resolve() for d in include_dirs), INCLUDE]


def build(source: Path, *, target: str | None = None, include_dirs: Iterable[Path] = ()) -> Path:
    """The shared library of ``source`` for ``target``, compiled now or taken from the cache."""
    source = Path(source).resolve()
    include_dirs = _with_convention(include_dirs)
    target = target or arch()
    compiler = nvcc()
    digest = hashlib.sha256()
    for part in (compiler, _compiler_version(compiler), target, *FLAGS):
        digest.update(part.encode() + b"\0")
    for path in _sources(source, include_dirs):
        digest.update(path.read_bytes() + b"\0")
    output = cache_dir() / f"{source.stem}-{target}-{digest.hexdigest()[:20]}.so"
    if output.is_file():
        return output
    output.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(output.with_name(f"{output.name}.lock")):
        if output.is_file():  # another process compiled it while this one waited
            return output
        _compile(source, output, target, include_dirs)
    return output


@contextlib.contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_file`` (created if missing) for the block. The descriptor is closed on
    every path out of the block (a failed or timed-out compile included), which drops the lock, and the kernel drops
    it when a holder dies, so a leftover lock file never blocks anyone. It is left in place: removing it while
    another process waits on it would let a third lock a fresh file and compile alongside. A waiter waits at most
    one compile (``TIMEOUT_S``). A lock is per open file, so threads of one process exclude each other too.
    Without ``fcntl`` (Windows) the block runs unlocked."""
    if fcntl is None:
        yield
        return
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _compile(source: Path, output: Path, target: str, include_dirs: list[Path]) -> None:
    """Run nvcc into a partial file of this process and thread, then rename it into place: a reader (or a process
    without the lock) sees either no library or a complete one."""
    partial = output.with_name(f"{output.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    cmd = command(source, partial, target, include_dirs)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
        if done.returncode != 0:
            raise BuildError(f"{source.name} did not compile (exit {done.returncode}):\n$ {' '.join(cmd)}\n"
                             f"{(done.stderr or done.stdout).strip()}")
        os.replace(partial, output)
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"{source.name}: nvcc ran longer than {exc.timeout} s") from exc
    finally:
        partial.unlink(missing_ok=True)


_VERSIONS: dict[str, str] = {}


def _compiler_version(compiler: str) -> str:
    if compiler not in _VERSIONS:
        done = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60, check=False)
        _VERSIONS[compiler] = done.stdout
    return _VERSIONS[compiler]


def build_order(sources: Iterable[Path], environ: Mapping[str, str]) -> list[Path]:
    """The sorted sources, rotated to start at worker i's i/n of the list (``workers.slot``): xdist workers that
    build the same list at once then start on different sources and meet only near the ends of their runs, where a
    source is often already built. Evenly spaced starts, not consecutive ones: each worker takes many sources at
    once (one per CPU), so workers starting one apart would compile nearly the same batch. Sorted order outside a
    pinned worker or with a malformed slot."""
    ordered = sorted(sources)
    worker = workers.slot(environ)
    if worker is None or not ordered:
        return ordered
    index, count = worker
    start = index * len(ordered) // count
    return ordered[start:] + ordered[:start]


def usable_cpus() -> int:
    """The CPUs this process may run on: an xdist worker is pinned to its share of the host (``host.pin_host``),
    and nvcc inherits that set, so more parallel builds than this only take turns on the same CPUs."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def build_all(sources: Iterable[Path], *, include_dirs: Iterable[Path] = (), jobs: int | None = None) -> dict:
    """Build many sources in parallel (by default one nvcc per usable CPU, ``usable_cpus``), in ``build_order``;
    returns ``{source: library path or BuildError}``. Used to start every build of a run at once; each case still
    gets its own library's error."""
    sources = build_order({Path(s).resolve() for s in sources}, os.environ)
    if not sources:
        return {}
    target = arch()
    include_dirs = list(include_dirs)
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs or usable_cpus()) as pool:
        futures = {pool.submit(build, s, target=target, include_dirs=include_dirs): s for s in sources}
        results: dict[Path, Path | BaseException] = {}
        for future in concurrent.futures.as_completed(futures):
            try:
                results[futures[future]] = future.result()
            except BuildError as exc:
                results[futures[future]] = exc
    with _LOCK:
        _BUILT.update(results)
    return results


def kernels_root(source: Path) -> Path:
    """The ``kernels`` folder above ``source`` (the include root for headers shared between chapters), or the
    source's own folder."""
    for parent in source.parents:
        if parent.name == "kernels":
            return parent
    return source.parent


class CudaLibrary:
    """The launchers of one ``.cu`` file, built on first use: ``CudaLibrary(__file__, "copy.cu").copy_vec4(y, x, n)``."""

    def __init__(self, beside: str | Path, name: str, *, include_dirs: Iterable[Path] = ()) -> None:
        self.source = (Path(beside).resolve().parent / name).resolve()
        self.include_dirs = [*include_dirs, kernels_root(self.source)]
        self._lib: ctypes.CDLL | None = None
        self._launchers: dict[str, Callable[..., None]] = {}

    def __repr__(self) -> str:
        return f"CudaLibrary({self.source})"

    def _load(self) -> ctypes.CDLL:
        if self._lib is None:
            with _LOCK:
                built = _BUILT.get(self.source)
            if isinstance(built, BaseException):
                raise built
            if built is None:
                try:
                    built = build(self.source, include_dirs=self.include_dirs)
                except BuildError as exc:
                    with _LOCK:
                        _BUILT[self.source] = exc
                    raise
            lib = ctypes.CDLL(str(built))
            lib.aiperf_error_string.restype = ctypes.c_char_p
            lib.aiperf_error_string.argtypes = [ctypes.c_int]
            self._lib = lib
        return self._lib

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._launchers:
            lib = self._load()
            try:
                function = getattr(lib, name)
            except AttributeError:
                raise AttributeError(f"{self.source.name} exports no launcher {name!r} (AIPERF_EXPORT int {name}(...))"
                                     ) from None
            function.restype = ctypes.c_int
            self._launchers[name] = _launcher(lib, function, f"{self.source.name}:{name}")
        return self._launchers[name]


def _launcher(lib: ctypes.CDLL, function: Any, label: str) -> Callable[..., None]:
    import torch

    def convert(position: int, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            if not value.is_contiguous():
                raise ValueError(f"{label}: argument {position} is a non-contiguous tensor; pass .contiguous()")
            return ctypes.c_void_p(value.data_ptr())
        if isinstance(value, (bool, int)):
            return ctypes.c_int64(int(value))
        if isinstance(value, float):
            return ctypes.c_double(value)
        raise TypeError(f"{label}: argument {position} is {type(value).__name__}; launchers take tensors, ints, floats")

    def launch(*args: Any) -> None:
        converted = [convert(i, a) for i, a in enumerate(args)]
        stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
        code = function(*converted, stream)
        if code != 0:
            raise CudaError(f"{label}: {lib.aiperf_error_string(code).decode()} (CUDA error {code})")

    launch.__name__ = label
    return launch
