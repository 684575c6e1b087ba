"""The registry of promoted kernels: one JSON document, merged under a lock and replaced atomically.

A record is keyed ``<family>/<target>/<hardware>`` (``fused_add_rmsnorm/hidden4096/h200``) and holds what makes
the promotion reproducible and checkable: the candidate's name and parameters, the template's SHA-256 and the
generator version it was rendered with, the SHA-256 of the emitted source and its path, the speedup interval over
the incumbent with its noise margin, the incumbent's name, and provenance (GPU, time). Writers go through
``pytest_aiperf.expectations_io``: an exclusive lock on the registry's folder for the whole read-merge-write, and
a write to a temporary file renamed over the document, so concurrent promotions in several processes merge and a
reader never sees half a document.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pytest_aiperf import expectations_io

DEFAULT = Path(__file__).resolve().parents[1] / "generated" / "REGISTRY.json"
VERSION = 1


class RegistryError(ValueError):
    """The registry file is not a kernelgen registry (unreadable, not JSON, or the wrong shape)."""


def key(family: str, target: dict[str, int], hardware: str) -> str:
    return f"{family}/{'-'.join(f'{k}{v}' for k, v in sorted(target.items()))}/{hardware}"


def _parse(path: Path, text: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegistryError(f"{path}: not JSON (line {exc.lineno}: {exc.msg})") from exc
    if not isinstance(doc, dict) or doc.get("version") != VERSION or not isinstance(doc.get("kernels"), dict):
        raise RegistryError(f"{path}: not a kernelgen registry (want {{'version': {VERSION}, 'kernels': {{...}}}})")
    return doc


def read(path: Path = DEFAULT) -> dict[str, dict[str, Any]]:
    """Every record by key; empty when there is no registry yet."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    return _parse(Path(path), text)["kernels"]


def promote(record: dict[str, Any], path: Path = DEFAULT) -> str:
    """Merge ``record`` (with ``family``, ``target``, ``hardware``) into the registry under its key; returns the
    key. Other keys written meanwhile by other processes are kept."""
    missing = [k for k in ("family", "target", "hardware", "candidate", "params", "template_sha256") if k not in record]
    if missing:
        raise ValueError(f"a registry record needs {missing}")
    name = key(record["family"], record["target"], record["hardware"])
    with expectations_io.locked(Path(path)) as target:
        try:
            doc = _parse(target, target.read_text(encoding="utf-8"))
        except FileNotFoundError:
            doc = {"version": VERSION, "kernels": {}}
        doc["kernels"][name] = record
        expectations_io.write_atomic(target, expectations_io.dumps(doc))
    return name
