"""Chapter 1, performance basics: launch overhead, batching, tensor cores, host-to-device feeding, fusion."""

from __future__ import annotations
