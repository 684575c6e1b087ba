"""What several chapter 18 pairs share: Hugging Face's GQA expansion (a baseline idiom) and the attention their
float64 references compute without expanding anything."""

from __future__ import annotations

import torch


def repeat_kv(t: torch.Tensor, groups: int) -> torch.Tensor:
    """Hugging Face's ``repeat_kv``: each KV head copied for the query heads of its group, (batch, kv_heads * groups,
    seq, head_dim); a real copy (expand then reshape)."""
    batch, kv_heads, seq, head_dim = t.shape
    return t[:, :, None].expand(batch, kv_heads, groups, seq, head_dim).reshape(batch, kv_heads * groups, seq,
                                                                                 head_dim)


def grouped_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                      scale: float | None = None) -> torch.Tensor:
    """Attention of ``q`` (batch, heads, queries, dk) over ``k`` (batch, kv_heads, keys, dk) and ``v`` (batch,
    kv_heads, keys, dv) with query head h reading KV head h // (heads / kv_heads), in the inputs' dtype (the
    references call it in float64): the group's queries are stacked as rows, so nothing is repeated. ``mask``
    (broadcast to (batch, 1, queries, keys), True where a query sees a key) is optional."""
    batch, heads, queries, _ = q.shape
    kv_heads = k.shape[1]
    rows = q.reshape(batch, kv_heads, heads // kv_heads * queries, q.shape[-1])
    scores = rows @ k.transpose(-1, -2) * (scale if scale is not None else q.shape[-1] ** -0.5)
    if mask is not None:
        full = mask.expand(batch, 1, queries, k.shape[2])
        grouped = full[:, :, None].expand(batch, 1, heads // kv_heads, queries, k.shape[2])
        scores = scores.masked_fill(~grouped.reshape(batch, 1, -1, k.shape[2]), float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v
    return out.reshape(batch, heads, queries, v.shape[-1])
