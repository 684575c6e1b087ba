"""Chapter 2, GPU hardware: tensor cores (TF32), the host link (pinned memory), HBM (bytes in flight), L2 (blocking)."""

from __future__ import annotations
