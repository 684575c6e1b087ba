"""Chapter 13, PyTorch profiling and memory tuning: the training-step lessons a profiler and a memory snapshot find
in a plain PyTorch loop (mixed precision, host syncs, optimizer kernels, activation memory, allocator segments,
backward hooks), each measured on the shared Llama-style model of ``kernels.llm``."""

from __future__ import annotations
