"""A small serving engine shared by the serving pairs of chapters 15 and 16, over the shared ``kernels.llm`` model:
seeded request traces, contiguous and paged KV pools, paged decode attention (Triton) and bottom-right causal
prefill attention, a packed prefill/decode/mixed model step, static, continuous and chunked-prefill schedulers,
block-hash and radix prefix caches, and the replay loop that returns each request's tokens, its ``Timeline`` and the
run's statistics. Both arms of a serving pair run this engine and differ only in the technique.

Design references: vLLM, SGLang and gpt-fast, whose designs each module names; none of them is installed or copied.
Each module's header gives its cost model."""

from kernels.serving.engine import Chunk, Engine
from kernels.serving.kv import ContiguousPool, KVPool, PagedPool
from kernels.serving.metrics import ServeStats
from kernels.serving.prefix import BlockHashCache, RadixCache
from kernels.serving.scheduler import ChunkedPrefill, ContinuousBatching, StaticBatching
from kernels.serving.serve import Served, serve
from kernels.serving.trace import LogNormal, Request, Trace, shared_prefix_trace, synthetic_trace

__all__ = ["BlockHashCache", "Chunk", "ChunkedPrefill", "ContiguousPool", "ContinuousBatching", "Engine", "KVPool",
           "LogNormal", "PagedPool", "RadixCache", "Request", "ServeStats", "Served", "StaticBatching", "Trace",
           "serve", "shared_prefix_trace", "synthetic_trace"]
