"""The chapters' Python modules: no top-level function or class is defined twice (the later one silently wins,
so a case would time code that its module no longer seems to contain)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
MODULES = sorted([*ROOT.glob("kernels/**/*.py"), *ROOT.glob("suites/**/*.py")])


@pytest.mark.skipif(not MODULES, reason="no kernels/ or suites/ beside the plugin (installed without the repository)")
def test_no_kernel_or_suite_module_defines_a_name_twice() -> None:
    twice = []
    for path in MODULES:
        seen: dict[str, int] = {}
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                if node.name in seen:
                    twice.append(f"{path.relative_to(ROOT)}: {node.name} at lines {seen[node.name]} and {node.lineno}")
                seen[node.name] = node.lineno
    assert not twice, "defined twice (the later definition wins):\n" + "\n".join(twice)
