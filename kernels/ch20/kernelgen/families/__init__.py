"""The kernel families: each module holds one family's typed space, constraints and case parts (``FAMILY``)."""

from __future__ import annotations

from kernels.ch20.kernelgen.family import Family
from kernels.ch20.kernelgen.families import fused_add_rmsnorm, row_softmax

FAMILIES: dict[str, Family] = {f.name: f for f in (fused_add_rmsnorm.FAMILY, row_softmax.FAMILY)}


def family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"no kernel family {name!r}; known: {', '.join(sorted(FAMILIES))}") from None
