"""Chapter 6, CUDA fundamentals: filling the grid, shared-memory banks, instruction-level parallelism, registers."""

from __future__ import annotations
