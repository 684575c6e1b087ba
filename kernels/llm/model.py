"""A Llama-style decoder in eager PyTorch, written as Hugging Face's ``modeling_llama.py`` writes it: the competent
eager baseline that chapters 13-20 optimize.

- ``RMSNorm`` upcasts to fp32 (pow, mean, rsqrt, multiply), casts back, then scales by its weight.
- RoPE is rotate-half (``q * cos + rotate_half(q) * sin``) with cos/sin tables for ``max_positions`` positions,
  computed in float64 and stored in the model's dtype (what HF's fp32 tables cast to the activations' dtype give).
- Attention projects q/k/v (Qwen2 adds biases), applies RoPE, and calls ``F.scaled_dot_product_attention`` with
  ``enable_gqa=True``, so the KV heads are never repeated in memory; then the output projection. Where a mask is
  needed (a static cache read at a tensor position, a chunk after cached tokens), SDPA with a mask and
  ``enable_gqa`` runs only its math kernel on CUDA (transformers repeats the KV heads there instead), so each KV
  head's query heads become rows of one query against that head's keys, the mask repeated per row: the same
  attention, through SDPA's memory-efficient kernel, with no copy of the cache.
- The MLP is SwiGLU: ``down(silu(gate(x)) * up(x))``; each layer is pre-norm with two residual adds; a final norm and
  the LM head (the embedding's weight when tied) close the stack.

Three ways in: ``Decoder.forward(tokens)`` is causal self-attention over the whole sequence (training, prefill
without a cache); ``forward(tokens, cache, pos)`` runs the tokens at positions pos, pos + 1, ... against a static
``KVCache``, writing their keys and values in place with ``index_copy_`` (HF's ``StaticCache`` idiom; no
concatenation); ``prefill`` and ``decode`` wrap it for generation. With a cache the causal mask is explicit whenever
the queries do not start at position 0, because SDPA's ``is_causal`` aligns the diagonal top-left (query i sees keys
0..i), which is only right when q_len == kv_len. ``pos`` is an int (the live prefix of the cache is sliced, the cheap
eager path) or a 0-d device tensor (every step has the same shapes and reads the whole cache behind a mask, the path
for CUDA graphs and ``torch.compile`` without recompiles). Weights are seeded and random (``kernels.llm.weights``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from kernels.llm.config import LlamaConfig
from kernels.llm.weights import initialize

Position = int | torch.Tensor


class RMSNorm(nn.Module):
    def __init__(self, hidden: int, eps: float, **factory: Any) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(hidden, **factory))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        input_dtype = x.dtype
        h = x.to(torch.promote_types(input_dtype, torch.float32))
        variance = h.pow(2).mean(-1, keepdim=True)
        h = h * torch.rsqrt(variance + self.eps)
        return self.weight * h.to(input_dtype)


def rope_tables(cfg: LlamaConfig, positions: int, dtype: torch.dtype, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, (positions, head_dim), in the rotate-half layout (the half-width angles repeated twice)."""
    inv_freq = cfg.rope_theta ** (-torch.arange(0, cfg.head_dim, 2, dtype=torch.float64) / cfg.head_dim)
    angles = torch.outer(torch.arange(positions, dtype=torch.float64), inv_freq)
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos().to(dtype=dtype, device=device), angles.sin().to(dtype=dtype, device=device)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor,
                 sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE on q and k, (batch, heads, seq, head_dim), with cos/sin (seq, head_dim) of the tokens' positions."""
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


class CacheSlot(NamedTuple):
    """One layer's view of the KV cache for one forward: the buffers (batch, kv_heads, max_len, head_dim) written in
    place at ``write_index`` (the new tokens' positions), the first ``kv_len`` positions attended to, and either
    ``is_causal`` (queries start at position 0) or a boolean ``mask`` (q_len, kv_len), True where a query may see
    a key; neither when every key is visible (one query at the end)."""
    keys: torch.Tensor
    values: torch.Tensor
    write_index: torch.Tensor
    kv_len: int
    mask: torch.Tensor | None
    is_causal: bool


class Attention(nn.Module):
    def __init__(self, cfg: LlamaConfig, **factory: Any) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = cfg.heads, cfg.kv_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden, cfg.q_width, bias=cfg.qkv_bias, **factory)
        self.k_proj = nn.Linear(cfg.hidden, cfg.kv_width, bias=cfg.qkv_bias, **factory)
        self.v_proj = nn.Linear(cfg.hidden, cfg.kv_width, bias=cfg.qkv_bias, **factory)
        self.o_proj = nn.Linear(cfg.q_width, cfg.hidden, bias=False, **factory)

    def packed_qkv(self, h: torch.Tensor, cos: torch.Tensor,
                   sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v ``[tokens, heads, head_dim]`` of packed normed hidden states ``[tokens, hidden]`` (sequences laid
        end to end, as a serving step packs them), RoPE applied at each token's own position (``cos``/``sin``
        ``[tokens, 1, head_dim]``)."""
        count = h.shape[0]
        q = self.q_proj(h).view(count, self.heads, self.head_dim)
        k = self.k_proj(h).view(count, self.kv_heads, self.head_dim)
        v = self.v_proj(h).view(count, self.kv_heads, self.head_dim)
        q, k = apply_rotary(q, k, cos, sin)
        return q, k, v

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                cache: CacheSlot | None = None) -> torch.Tensor:
        batch, seq, _ = x.shape
        q = self.q_proj(x).view(batch, seq, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(batch, seq, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(batch, seq, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, k, cos, sin)
        if cache is None:
            mask, is_causal = None, seq > 1
        else:
            cache.keys.index_copy_(2, cache.write_index, k)
            cache.values.index_copy_(2, cache.write_index, v)
            k, v = cache.keys[:, :, :cache.kv_len], cache.values[:, :, :cache.kv_len]
            mask, is_causal = cache.mask, cache.is_causal
        if mask is None or self.kv_heads == self.heads:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, enable_gqa=True)
        else:  # each KV head's query heads as rows of one query (SDPA with a mask and enable_gqa takes the math path)
            group = self.heads // self.kv_heads
            rows = q.reshape(batch, self.kv_heads, group * seq, self.head_dim)
            out = F.scaled_dot_product_attention(rows, k, v, attn_mask=mask.repeat(group, 1)).view(q.shape)
        return self.o_proj(out.transpose(1, 2).reshape(batch, seq, self.heads * self.head_dim))


class MLP(nn.Module):
    def __init__(self, cfg: LlamaConfig, **factory: Any) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden, cfg.intermediate, bias=False, **factory)
        self.up_proj = nn.Linear(cfg.hidden, cfg.intermediate, bias=False, **factory)
        self.down_proj = nn.Linear(cfg.intermediate, cfg.hidden, bias=False, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    """Pre-norm attention and MLP blocks with residual adds: ``layer(x, cos, sin)`` for causal self-attention over
    x (batch, seq, hidden), or with a ``CacheSlot`` to attend over the cache."""

    def __init__(self, cfg: LlamaConfig, **factory: Any) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden, cfg.norm_eps, **factory)
        self.self_attn = Attention(cfg, **factory)
        self.post_attention_layernorm = RMSNorm(cfg.hidden, cfg.norm_eps, **factory)
        self.mlp = MLP(cfg, **factory)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                cache: CacheSlot | None = None) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class KVCache:
    """A static KV cache: per layer, keys and values (batch, kv_heads, max_len, head_dim) allocated once.

    Zero-filled, not empty: slots past the live length are masked out of attention, but a masked NaN would still
    poison the softmax-weighted sum of values in SDPA's math path. Positions are the caller's to track.
    """

    def __init__(self, cfg: LlamaConfig, batch: int, max_len: int, dtype: torch.dtype, device: Any) -> None:
        shape = (batch, cfg.kv_heads, max_len, cfg.head_dim)
        self.batch, self.max_len = batch, max_len
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.layers)]

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in (*self.keys, *self.values))

    def slot(self, layer: int, write_index: torch.Tensor, kv_len: int, mask: torch.Tensor | None,
             is_causal: bool) -> CacheSlot:
        return CacheSlot(self.keys[layer], self.values[layer], write_index, kv_len, mask, is_causal)


class Decoder(nn.Module):
    """A Llama-style decoder of ``cfg`` with seeded random weights (``seed=None`` leaves them uninitialized, to
    load a state dict). ``layers`` is an ``nn.ModuleList`` of ``DecoderLayer`` for regional compilation and
    activation checkpointing; RoPE tables cover positions 0..max_positions-1."""

    def __init__(self, cfg: LlamaConfig, *, dtype: torch.dtype = torch.float32, device: Any = "cpu",
                 seed: int | None = 0, max_positions: int = 8192) -> None:
        super().__init__()
        self.config, self.max_positions = cfg, max_positions
        factory = {"dtype": dtype, "device": "meta"}
        self.embed_tokens = nn.Embedding(cfg.vocab, cfg.hidden, **factory)
        self.layers = nn.ModuleList(DecoderLayer(cfg, **factory) for _ in range(cfg.layers))
        self.norm = RMSNorm(cfg.hidden, cfg.norm_eps, **factory)
        self.lm_head = nn.Linear(cfg.hidden, cfg.vocab, bias=False, **factory)
        self.to_empty(device=device)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        cos, sin = rope_tables(cfg, max_positions, dtype, device)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        if seed is not None:
            initialize(self, cfg, seed)

    @property
    def dtype(self) -> torch.dtype:
        return self.embed_tokens.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.embed_tokens.weight.device

    def as_dtype(self, dtype: torch.dtype) -> Decoder:
        """A copy in ``dtype`` with every weight cast from this model's current values (exact when widening, e.g.
        bf16 to float64, for a reference) and RoPE tables recomputed in float64 and rounded once to ``dtype``
        (``.to(dtype)`` would cast this model's rounded tables instead)."""
        twin = Decoder(self.config, dtype=dtype, device=self.device, seed=None, max_positions=self.max_positions)
        twin.load_state_dict(self.state_dict())
        return twin

    def hidden_states(self, tokens: torch.Tensor, cache: KVCache | None = None, pos: Position = 0,
                      depth: int | None = None) -> torch.Tensor:
        """Final-norm hidden states (batch, seq, hidden) of ``tokens`` (batch, seq): causal over the sequence
        without a cache; with one, the tokens sit at positions pos.. and attend over the cache's first positions.
        A tensor ``pos`` (0-d, on the model's device) is not range-checked: checking would synchronize.
        ``depth`` runs only the first ``depth`` layers before the final norm (an early exit, LayerSkip's draft),
        reading and writing only those layers of the cache."""
        seq = tokens.shape[1]
        layers = self.layers if depth is None else self.layers[:depth]
        if (pos if isinstance(pos, int) else 0) + seq > self.max_positions:
            raise ValueError(f"positions up to {seq - 1} (from {pos}) exceed the RoPE tables' {self.max_positions}")
        x = self.embed_tokens(tokens)
        if cache is None:
            cos, sin = self.cos[:seq], self.sin[:seq]
            for layer in layers:
                x = layer(x, cos, sin)
            return self.norm(x)
        if isinstance(pos, int):
            if pos + seq > cache.max_len:
                raise ValueError(f"positions {pos}..{pos + seq - 1} do not fit a cache of {cache.max_len}")
            write_index = torch.arange(pos, pos + seq, device=tokens.device)
            cos, sin = self.cos[pos:pos + seq], self.sin[pos:pos + seq]
            kv_len, is_causal = pos + seq, pos == 0 and seq > 1
            needs_mask = pos > 0 and seq > 1
        else:
            write_index = pos + torch.arange(seq, device=tokens.device)
            cos, sin = self.cos[write_index], self.sin[write_index]
            kv_len, is_causal, needs_mask = cache.max_len, False, True
        mask = (torch.arange(kv_len, device=tokens.device) <= write_index[:, None]) if needs_mask else None
        for index, layer in enumerate(layers):
            x = layer(x, cos, sin, cache.slot(index, write_index, kv_len, mask, is_causal))
        return self.norm(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The LM head over final-norm hidden states."""
        return self.lm_head(hidden)

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None, pos: Position = 0,
                depth: int | None = None) -> torch.Tensor:
        """Logits (batch, seq, vocab) at every position of ``tokens`` (see ``hidden_states``): with a cache and
        several tokens after ``pos`` > 0, the logits of each, as a speculative verify step reads them."""
        return self.logits(self.hidden_states(tokens, cache, pos, depth))

    def prefill(self, tokens: torch.Tensor, cache: KVCache, pos: Position = 0) -> torch.Tensor:
        """Write the prompt's keys and values into ``cache`` from ``pos`` on; logits (batch, vocab) of its last
        position only (the LM head over one position, as ``generate`` does with ``logits_to_keep=1``)."""
        return self.logits(self.hidden_states(tokens, cache, pos)[:, -1])

    def decode(self, tokens: torch.Tensor, cache: KVCache, pos: Position) -> torch.Tensor:
        """One new token per request, ``tokens`` (batch, 1) at position ``pos``: logits (batch, vocab)."""
        return self.logits(self.hidden_states(tokens, cache, pos)[:, -1])


@torch.no_grad()
def greedy_generate(model: Decoder, prompt: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """Greedy decoding: prefill ``prompt`` (batch, seq) into a fresh static cache, then ``new_tokens - 1`` decode
    steps; returns the generated tokens (batch, new_tokens)."""
    batch, seq = prompt.shape
    cache = KVCache(model.config, batch, seq + new_tokens, model.dtype, model.device)
    token = model.prefill(prompt, cache).argmax(-1, keepdim=True)
    generated = [token]
    for step in range(1, new_tokens):
        token = model.decode(token, cache, seq + step - 1).argmax(-1, keepdim=True)
        generated.append(token)
    return torch.cat(generated, dim=1)


@torch.no_grad()
def teacher_forced_logits(model: Decoder, prompt: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """The logits (batch, new_tokens, vocab) ``model`` assigns to each generated position given the prompt and the
    generated prefix before it, from one causal forward over prompt + generated[:, :-1]. On
    ``model.as_dtype(torch.float64)`` this is the reference that generated tokens are checked against."""
    tokens = torch.cat((prompt, generated[:, :-1]), dim=1)
    return model(tokens)[:, prompt.shape[1] - 1:]
