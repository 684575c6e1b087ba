"""The memory twin of ``last_token_logits_prefill``: the same two arms, judged by the peak memory one call allocates
beyond what it starts with (the model's weights are the arms' state, built outside the call).

- Baseline: the LM head over every position materializes ``[batch, seq, vocab]`` bf16 logits.
- Optimized: the LM head over the last positions only; the peak is the forward's own activations.

Timing shapes as in ``last_token_logits_prefill``: (2048, 16, 16, 2048) Llama-3.2-1B and (896, 24, 16, 2048)
Qwen2.5-0.5B, 32,768 prompt tokens, bf16.

Napkin math (the caching allocator's ``max_memory_allocated``; the same on H100 and H200):
- Llama-3.2-1B: the eager SwiGLU holds three [32,768, 8192] bf16 tensors at once (the SiLU output, up and their
  product: 1.6 GB) on top of the residual stream (134 MB) and the norm's fp32 copy: ~2.0 GB. The baseline adds 8.4 GB
  of logits (32,768 x 128,256 x 2 B) after the forward: ~8.6 GB vs ~2.0 GB, 4.3x.
- Qwen2.5-0.5B: the MLP holds 3 x 319 MB (4864 wide) on a 59 MB residual stream: ~1.1 GB; logits 32,768 x
  151,936 x 2 B = 10.0 GB: ~10.1 vs ~1.1 GB, ~9x.
- predicted memory ratio: 3.5-4.5x (Llama-3.2-1B), 7-10x (Qwen2.5-0.5B); floor ``min_speedup`` 2.4 (70% of 3.5).

Not yet measured on a GPU.
"""

from kernels.ch16.last_token_logits_prefill import (baseline_every_position_head, inputs,
                                                    optimized_last_position_head, reference, work)

__all__ = ["baseline_every_position_head", "inputs", "optimized_last_position_head", "reference", "work"]
