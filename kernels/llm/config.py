"""Dimensions of the Llama-style decoders shared by chapters 13-20, as published in each model's ``config.json``.

Only the shape of the model is taken from the release; weights are random (``kernels.llm.weights``). Fields follow
Hugging Face's names where a reader would look them up: ``hidden`` is ``hidden_size``, ``layers``
``num_hidden_layers``, ``heads``/``kv_heads`` ``num_attention_heads``/``num_key_value_heads``, ``intermediate``
``intermediate_size``, ``vocab`` ``vocab_size``, ``norm_eps`` ``rms_norm_eps``, ``tie_embeddings``
``tie_word_embeddings``, ``qkv_bias`` Qwen2's biased q/k/v projections, ``init_std`` ``initializer_range`` (the
std of the random weights; see ``kernels.llm.weights``).

``init_std`` is 0.02 in all three published configs, and what matters for random weights is the gain of one
projection, init_std * sqrt(hidden). At a gain well below 1 the residual stream stays dominated by the token's own
embedding, and a tied LM head then scores the current token about sqrt(hidden) * rms(embedding) / rms(residual)
standard deviations above the rest: greedy decoding repeats one token forever. Measured (fp32, vocab 32000, seed 1,
two to four 8-token prompts, 24 greedy tokens): Qwen2.5-0.5B at 0.02 (gain 0.6) generated one distinct token per
request, at 1/sqrt(896) (gain 1.0) 23-24 of 24; Llama-3.2-1B at 0.02 (gain 0.9) 16-20 of 24. So the Llama presets
keep the published 0.02 and Qwen's uses 1/sqrt(hidden).

Llama 3.x's ``rope_scaling`` (type "llama3": factor 32 for 3.2, none for 3-8B) only changes the values in the rotary
cos/sin tables, not the work or the shapes, so it is omitted.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from kernels import torch_dtype


@dataclass(frozen=True)
class LlamaConfig:
    """A decoder's dimensions; every derived size below counts elements unless it says bytes."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    rope_theta: float
    norm_eps: float
    tie_embeddings: bool
    qkv_bias: bool = False
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if self.heads % self.kv_heads:
            raise ValueError(f"{self.heads} query heads do not split into groups of {self.kv_heads} KV heads")
        if self.head_dim % 2:
            raise ValueError(f"rotate-half RoPE needs an even head_dim, not {self.head_dim}")

    @property
    def q_width(self) -> int:
        """Width of the query projection's output: heads * head_dim."""
        return self.heads * self.head_dim

    @property
    def kv_width(self) -> int:
        """Width of the key (and of the value) projection's output: kv_heads * head_dim."""
        return self.kv_heads * self.head_dim

    @property
    def group_size(self) -> int:
        """Query heads sharing one KV head."""
        return self.heads // self.kv_heads

    @property
    def params_per_layer(self) -> int:
        """One decoder layer: q/k/v/o projections (and q/k/v biases), the SwiGLU MLP, two RMSNorm weights."""
        attention = self.hidden * (self.q_width + 2 * self.kv_width) + self.q_width * self.hidden
        biases = self.q_width + 2 * self.kv_width if self.qkv_bias else 0
        return attention + biases + 3 * self.hidden * self.intermediate + 2 * self.hidden

    @property
    def embedding_params(self) -> int:
        """The token embedding, plus a separate LM head when the embeddings are not tied."""
        return self.vocab * self.hidden * (1 if self.tie_embeddings else 2)

    @property
    def params(self) -> int:
        """Every parameter: the layers, the final norm, the embedding and (untied) the LM head."""
        return self.layers * self.params_per_layer + self.hidden + self.embedding_params

    def kv_bytes_per_token(self, dtype: torch.dtype | str) -> int:
        """Bytes of KV cache one token occupies across all layers: keys and values, kv_heads * head_dim each."""
        itemsize = (torch_dtype(dtype) if isinstance(dtype, str) else dtype).itemsize
        return 2 * self.layers * self.kv_width * itemsize

    def with_layers(self, layers: int) -> LlamaConfig:
        """This config with ``layers`` decoder layers (e.g. one Llama-3-8B layer for an operator-level case)."""
        return dataclasses.replace(self, layers=layers)

    def with_vocab(self, vocab: int) -> LlamaConfig:
        """This config with a ``vocab``-token embedding and LM head (e.g. 32000 for a cheaper head)."""
        return dataclasses.replace(self, vocab=vocab)


# huggingface.co/meta-llama/Llama-3.2-1B/blob/main/config.json (mirrored at
# huggingface.co/Emm9625/Llama-3.2-1B-chatml/blob/main/config.json): 1,235,814,400 parameters with the tied head.
LLAMA_3_2_1B = LlamaConfig(hidden=2048, layers=16, heads=32, kv_heads=8, head_dim=64, intermediate=8192,
                           vocab=128256, rope_theta=500000.0, norm_eps=1e-5, tie_embeddings=True)

# huggingface.co/meta-llama/Meta-Llama-3-8B/blob/main/config.json: 8,030,261,248 parameters, 218,112,000 per layer.
LLAMA_3_8B = LlamaConfig(hidden=4096, layers=32, heads=32, kv_heads=8, head_dim=128, intermediate=14336,
                         vocab=128256, rope_theta=500000.0, norm_eps=1e-5, tie_embeddings=False)

# huggingface.co/Qwen/Qwen2.5-0.5B/blob/main/config.json (the dimensions of kernels/ch12/cuda_graph_replay.py):
# 494,032,768 parameters ("0.49B, 0.36B non-embedding" on the model card). init_std is ours (see the module docstring).
QWEN2_5_0_5B = LlamaConfig(hidden=896, layers=24, heads=14, kv_heads=2, head_dim=64, intermediate=4864,
                           vocab=151936, rope_theta=1000000.0, norm_eps=1e-6, tie_embeddings=True, qkv_bias=True,
                           init_std=896**-0.5)

# Ours, for CPU checks: gain 1 (init_std 1/sqrt(64)), so activations and logits have Llama-3.2-1B's scale (final
# residual rms ~0.8 in both), and an untied head, because at hidden 64 even gain 1 leaves the echo of a tied head at
# ~1.3 standard deviations against a 256-token maximum of ~2.8: measured over 4 seeds x 16 prompts, a tied TINY
# repeated the previous token at 72-83% of greedy steps, the untied one at 5-19% (64-69% distinct tokens).
TINY = LlamaConfig(hidden=64, layers=2, heads=4, kv_heads=2, head_dim=16, intermediate=128, vocab=256,
                   rope_theta=10000.0, norm_eps=1e-5, tie_embeddings=False, init_std=0.125)
