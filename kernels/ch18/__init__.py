"""Chapter 18, attention and decoding kernels: sliding-window attention with FlexAttention's block mask, grouped
query attention that reads each KV head once, paged flash-decoding, cascade decoding over a shared prefix, DeepSeek's
multi-head latent attention in its absorbed form, and a fused top-k/top-p sampler."""

from __future__ import annotations
