"""Chapter 12, CUDA graphs and dynamic work: replaying captured launch sequences, device-side loops with conditional
graph nodes, persistent kernels pulling work from an atomic queue, shape buckets for graphs under changing batch
sizes, and graph branches that run concurrently."""

from __future__ import annotations
