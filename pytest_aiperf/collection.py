"""The collecting role (every process that collects tests: the single process, or each xdist worker): which case ids
each chapter declares, and where the collected chapters' CUDA sources live; and for one item, its chapter (the
expectations file), its kernels' folder and its path.

A chapter's ids are taken from its ``perf_pair`` markers when pytest parametrizes the test, before any selection
(a node id, ``-k``, ``--lf``) narrows the items, so a partial run never mistakes a deselected case for a deleted one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_aiperf.cases import chapter_of


@dataclass
class Collection:
    """``known``: chapter -> every case id its perf tests declare (chapters named explicitly by
    ``perf_pair(..., chapter=)`` are left out: several modules may share them). ``kernel_dirs``: folders of the
    CUDA sources of the collected perf cases. ``perf_items``: how many perf tests were collected."""

    known: dict[str, set[str]] = field(default_factory=dict)
    kernel_dirs: set[Path] = field(default_factory=set)
    perf_items: int = 0
    chapters: set[str] = field(default_factory=set)

    def declare(self, chapter: str, ids: list[str]) -> None:
        self.known.setdefault(chapter, set()).update(ids)

    def add_item(self, chapter: str, kernel_dir: Path) -> None:
        self.perf_items += 1
        self.chapters.add(chapter)
        self.kernel_dirs.add(kernel_dir)


def chapter(item: pytest.Item) -> str:
    """The expectations file of an item: ``perf_pair(..., chapter=...)``, else from the module's path."""
    marker = item.get_closest_marker("perf_pair")
    return (marker.kwargs.get("chapter") if marker else None) or chapter_of(relpath(item))


def kernel_dir(item: pytest.Item) -> Path:
    """``suites/ch07/test_x.py`` -> ``<rootdir>/kernels/ch07``: where the case's CUDA sources live."""
    parts = Path(relpath(item)).parts
    return item.config.rootpath.joinpath("kernels", *parts[1:-1]) if parts[:1] == ("suites",) else Path(item.path).parent


def relpath(item: pytest.Item) -> str:
    """The item's file relative to the rootdir (its name alone where it lies outside)."""
    path = Path(str(item.path))
    try:
        return path.relative_to(item.config.rootpath).as_posix()
    except ValueError:
        return path.name
