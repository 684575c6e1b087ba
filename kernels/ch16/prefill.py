"""Batched prefill through the shared ``kernels.llm.Decoder``'s modules, in the two layouts a server can run it: a
padded ``[batch, longest prompt]`` rectangle (Hugging Face's batched ``forward``) and one packed ``[tokens]`` row
with per-prompt boundaries (vLLM's flattened batch, FlashAttention's ``cu_seqlens``).

Padded. Prompts are left-padded to the longest, as HF pads decoder-only prompts for generation; each row's position
ids count its real tokens only (HF's ``attention_mask.cumsum(-1) - 1``), and attention gets one boolean mask
``[batch, 1, longest, longest]``: causal and not a pad key. A pad query also sees itself, so its row of the softmax
is never empty (HF unmasks such rows for the same reason); pad rows compute throwaway values and every real token's
output is exactly that of its prompt alone. Every linear layer, norm and MLP runs over batch x longest rows. The KV
heads are repeated for their query groups first (HF's ``repeat_kv``: transformers passes ``enable_gqa`` to SDPA
only without a mask, as a mask with ``enable_gqa`` falls back to the math kernel on CUDA), then SDPA with the mask,
which FlashAttention does not take: on CUDA the memory-efficient kernel runs every (query, key) tile of the
rectangle.

Packed. The prompts' tokens are concatenated; linear layers, norms and the MLP run over the real tokens only, RoPE
takes each token's position in its own prompt, and attention runs per prompt, causal over its own keys
(``kernels.serving.attention.prefill_attention``: FlashAttention on CUDA, skipping the masked upper triangle).

Both return the final-norm hidden state of each prompt's last token ``[batch, hidden]``; the LM head is the caller's.
Model parameters travel as case inputs (``kernels.ch14.decoder_params``), so the plugin's float64 reference widens
them with the tokens.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

from kernels.ch14 import load_decoder
from kernels.llm import Decoder
from kernels.llm.model import apply_rotary
from kernels.serving.attention import prefill_attention

MAX_POSITIONS = 4096


def prompt_model(params: Sequence[torch.Tensor]) -> Decoder:
    """The decoder the parameters describe (``kernels.ch14.load_decoder``), frozen, with RoPE tables for prompts of
    up to ``MAX_POSITIONS`` tokens."""
    return load_decoder(params, MAX_POSITIONS).requires_grad_(False)


def left_padded(ids: torch.Tensor, lengths: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The packed ``ids`` as a left-padded ``[batch, longest]`` batch (pad id 0), its boolean attention mask and
    HF's position ids (pads at position 0)."""
    longest = max(lengths)
    index = torch.zeros((len(lengths), longest), dtype=torch.long)
    valid = torch.zeros((len(lengths), longest), dtype=torch.bool)
    offset = 0
    for row, n in enumerate(lengths):
        index[row, longest - n:] = torch.arange(offset, offset + n)
        valid[row, longest - n:] = True
        offset += n
    index, valid = index.to(ids.device), valid.to(ids.device)
    batch = torch.where(valid, ids[index], 0)
    positions = (valid.long().cumsum(-1) - 1).clamp(min=0)
    return batch, valid, positions


@torch.no_grad()
def padded_last_hidden(model: Decoder, ids: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
    """HF's batched prefill over the left-padded rectangle: the last token's final-norm hidden state per prompt."""
    cfg = model.config
    batch, valid, positions = left_padded(ids, lengths)
    rows, longest = batch.shape
    arange = torch.arange(longest, device=ids.device)
    causal = arange[None, :] <= arange[:, None]
    mask = (causal & valid[:, None, :]) | torch.eye(longest, dtype=torch.bool, device=ids.device)
    mask = mask[:, None]
    cos, sin = model.cos[positions][:, None], model.sin[positions][:, None]
    x = model.embed_tokens(batch)
    for layer in model.layers:
        attn = layer.self_attn
        h = layer.input_layernorm(x)
        q = attn.q_proj(h).view(rows, longest, cfg.heads, cfg.head_dim).transpose(1, 2)
        k = attn.k_proj(h).view(rows, longest, cfg.kv_heads, cfg.head_dim).transpose(1, 2)
        v = attn.v_proj(h).view(rows, longest, cfg.kv_heads, cfg.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, k, cos, sin)
        k, v = repeat_kv(k, cfg.group_size), repeat_kv(v, cfg.group_size)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + attn.o_proj(out.transpose(1, 2).reshape(rows, longest, cfg.q_width))
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    return model.norm(x[:, -1])


def repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """HF's ``repeat_kv``: (batch, kv_heads, seq, head_dim) -> (batch, kv_heads x groups, seq, head_dim), each KV
    head repeated for its query heads."""
    batch, kv_heads, seq, head_dim = x.shape
    return x[:, :, None].expand(batch, kv_heads, groups, seq, head_dim).reshape(batch, kv_heads * groups, seq, head_dim)


def packed_positions(lengths: Sequence[int], device: Any) -> torch.Tensor:
    """Each packed token's position within its own prompt."""
    return torch.cat([torch.arange(n) for n in lengths]).to(device)


@torch.no_grad()
def packed_last_hidden(model: Decoder, ids: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
    """The packed prefill: linear layers over the real tokens, attention per prompt; the last token's final-norm
    hidden state per prompt."""
    cfg = model.config
    count = ids.shape[0]
    positions = packed_positions(lengths, ids.device)
    ends = torch.tensor(lengths).cumsum(0)
    bounds = [(int(end) - n, int(end)) for n, end in zip(lengths, ends)]
    last = (ends - 1).to(ids.device)
    cos, sin = model.cos[positions][:, None], model.sin[positions][:, None]
    x = model.embed_tokens(ids)
    for layer in model.layers:
        attn = layer.self_attn
        q, k, v = attn.packed_qkv(layer.input_layernorm(x), cos, sin)
        out = torch.empty_like(q)
        for start, end in bounds:
            out[start:end] = prefill_attention(q[start:end], k[start:end], v[start:end], 0)
        x = x + attn.o_proj(out.reshape(count, cfg.q_width))
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    return model.norm(x[last])
