"""Chapter 9, arithmetic intensity and kernel fusion: fusing memory-bound chains (norms, epilogues, gated norms) to
cut HBM passes, register micro-tiling to raise a matmul's reuse, 2:4 sparse tensor cores, and a roofline sweep."""

from __future__ import annotations
