"""KV swap vs recompute: resuming preempted requests by recomputing their KV cache (a prefill of every token they
hold) vs copying the KV cache they had back from pinned host memory, then the next decode step.

A serving engine that runs out of KV blocks preempts requests and later resumes them; vLLM offers both modes
(``preemption_mode`` "recompute", its default, and "swap"). A preempted request holds n tokens (prompt and
generated): the KV of the first n - 1 was computed before preemption, and the last one was sampled but not yet fed.
Resuming means producing the logits that follow token n - 1 with the KV of all n tokens in the cache.

- Baseline (recompute): a fresh static cache, then ``model.prefill`` of all n tokens of every request (one causal
  forward, the KV written as it goes, the LM head at the last position only).
- Optimized (swap): a fresh static cache, then each layer's saved keys and values (n - 1 tokens) copied from
  pinned host memory with ``non_blocking=True`` (DMA, the host queues on), then ``model.decode`` of token n - 1.
  At preemption the engine had copied them out; that copy is not part of resuming and is in ``inputs``. On the CPU
  there is no pinned memory and the same copy is a host memcpy: the same function, untimed there.
- What is not modelled: other requests' work overlapping the swap-in on a side stream (vLLM's point in using one),
  and PCIe contention from other copies.

Shape ``(hidden, layers, requests, tokens)``: the width picks the model preset (``kernels.ch13.training``), each
request holds ``tokens``. Timing shapes: (2048, 16, 16, 4096), all of Llama-3.2-1B with 16 requests of 4096 tokens,
and (4096, 8, 16, 4096), eight Llama-3-8B layers (both sides of the ratio scale with the layer count, and the
float64 reference of 32 layers would not fit beside the model).

Napkin math (H100 SXM: pinned host-to-device ~53-55 GB/s, measured by ch02's ``pinned_transfer``; bf16 prefill GEMMs
~500-650 TFLOP/s in eager HF-style code):
- (2048, 16, 16, 4096): the KV is 32 KB per token (16 layers x 2 x 8 heads x 64 x 2 B), 65,520 tokens: 2.15 GB,
  ~39-41 ms to swap in; each layer's copy lands in a strided slice of the cache (the pending token's position
  follows it), so PyTorch DMAs into a contiguous device buffer and copies it on the device (~1.5 ms for all
  layers); the decode step ~1-2 ms (the weights, 2.5 GB, read once). Recompute: 2 x 0.97 G layer
  weights x 65,536 tokens = 127 TFLOP of projections and MLPs, and 16 x 4 x 16 x 32 x 64 x 4096^2 / 2 = 17.6 TFLOP
  of causal attention: ~145 TFLOP, ~0.22-0.29 s. Predicted 5-7x.
- (4096, 8, 16, 4096): 8 layers x 4 KB per token, the same 2.15 GB (~40 ms). Recompute: 2 x 1.74 G x 65,536 =
  229 TFLOP plus 17.6 TFLOP of attention: ~0.38-0.49 s. Predicted 8-11x.
- H200: the same PCIe link and GEMM peak, so the same ratios.
- floor: 70% of the lower prediction, 3.5.

Precision: both arms run the model in bf16; the swapped KV came from a prefill of n - 1 tokens, the recomputed one
from a prefill of n, so they differ by bf16 rounding; the logits of both are checked against a float64 prefill, one
request at a time (a batched float64 prefill would materialize 16 x 32 x 4096^2 scores in the math path, 68 GB).

Measured once on an H200 (2026-12-05, a first smoke run: one process, --aiperf-budget=1.5; not a recording):
2048x16x16x4096: 333 ms -> 46.1 ms, 7.23x [7.20, 7.25].
"""

from __future__ import annotations

from typing import Any

import torch

from kernels import seeded, torch_dtype
from kernels.ch13.training import config, decoder
from kernels.llm import Decoder, KVCache
from pytest_aiperf import Work


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[Any, ...]:
    """The requests' tokens (requests, tokens), the model, and per layer the keys and values of the first tokens - 1
    (requests, kv_heads, tokens - 1, head_dim) in host memory (pinned where the model is on CUDA), as a swap-out
    left them."""
    hidden, layers, requests, length = shape
    cfg = config(hidden, layers)
    model = decoder(cfg, torch_dtype(dtype), seed, device, max_positions=length)
    tokens = torch.randint(cfg.vocab, (requests, length), generator=seeded(seed)).to(device)
    cache = KVCache(cfg, requests, length - 1, model.dtype, device)
    with torch.no_grad():
        model.prefill(tokens[:, :-1], cache)
    pin = torch.device(device).type == "cuda"
    host = [t.to("cpu").pin_memory() if pin else t.to("cpu", copy=True) for t in (*cache.keys, *cache.values)]
    return tokens, model, host[:layers], host[layers:]


@torch.no_grad()
def baseline_recompute_prefill(tokens: torch.Tensor, model: Decoder, host_keys: list[torch.Tensor],
                               host_values: list[torch.Tensor]) -> torch.Tensor:
    """A fresh cache filled by a prefill of every held token: the next token's logits (requests, vocab)."""
    requests, length = tokens.shape
    cache = KVCache(model.config, requests, length, model.dtype, model.device)
    return model.prefill(tokens, cache)


@torch.no_grad()
def optimized_swap_in(tokens: torch.Tensor, model: Decoder, host_keys: list[torch.Tensor],
                      host_values: list[torch.Tensor]) -> torch.Tensor:
    """A fresh cache filled by copying the saved keys and values back, then one decode step of the pending token."""
    requests, length = tokens.shape
    cache = KVCache(model.config, requests, length, model.dtype, model.device)
    for saved, buffers in ((host_keys, cache.keys), (host_values, cache.values)):
        for host, device_buffer in zip(saved, buffers):
            device_buffer[:, :, :length - 1].copy_(host, non_blocking=host.is_pinned())
    return model.decode(tokens[:, -1:], cache, length - 1)


@torch.no_grad()
def reference(tokens: torch.Tensor, model: Decoder, host_keys: list[torch.Tensor],
              host_values: list[torch.Tensor]) -> torch.Tensor:
    """A float64 prefill of each request alone: its next-token logits."""
    model = model.as_dtype(torch.float64)
    length = tokens.shape[1]
    rows = [model.prefill(row[None], KVCache(model.config, 1, length, torch.float64, model.device))
            for row in tokens]
    return torch.cat(rows)


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """What the optimized arm must do at least: the saved KV moved over PCIe once (bytes), and the decode step's
    flops; one resumed request per item."""
    hidden, layers, requests, length = shape
    cfg = config(hidden, layers)
    kv = requests * (length - 1) * cfg.kv_bytes_per_token(dtype)
    decode = 2 * requests * (layers * (cfg.params_per_layer - 2 * hidden) + cfg.vocab * hidden)
    return Work(bytes=float(kv), flops=float(decode), items=float(requests), item_name="requests")
