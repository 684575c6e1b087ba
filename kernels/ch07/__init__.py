"""Chapter 7, memory access: coalescing, vector width, shared-memory tiling, asynchronous staging (cp.async, TMA)."""

from __future__ import annotations
