"""Chapter 15, serving core: the scheduling and KV-cache lessons of an inference server (continuous batching, paged KV,
prefix reuse, chunked prefill), each measured on the project's own small serving engine (``kernels.serving``) over
the shared Llama-style model of ``kernels.llm``, both arms the same engine differing only in the technique; and two
decoding lessons on that model's static-cache decode loop: self-speculative decoding, and grammar-guided decoding
with the grammar's masks on the GPU."""

from __future__ import annotations
