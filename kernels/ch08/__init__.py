"""Chapter 8, occupancy and ILP: launch configuration, warp divergence, loop unrolling, shared-memory tiling."""

from __future__ import annotations
