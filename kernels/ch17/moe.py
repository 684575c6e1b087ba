"""What the chapter's mixture-of-experts pairs share: the router (Mixtral's and Qwen-MoE's softmax, top-k and
renormalization), the Hugging Face per-expert loop, tokens sorted by expert on the device, and the experts' SwiGLU
MLPs as two grouped GEMMs over the sorted tokens.

Expert weights follow ``nn.Linear``: ``gate_up`` (experts, 2 x ffn, hidden) holds each expert's gate rows then its up
rows, ``down`` (experts, hidden, ffn). A token's output is the sum over its ``top_k`` experts of the router weight
times that expert's ``down(silu(gate(x)) * up(x))``.

``grouped_mm`` is ``torch._grouped_mm`` (one launch over every group; CUTLASS on sm90) wherever
``kernels.compat.grouped_mm_supported`` finds it working for the device and dtype; float64 (the references) takes a
per-group loop, and any other device and dtype where the probe fails raises instead of timing a slower stand-in.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from kernels import normal
from kernels.compat import grouped_mm_supported


def expert_weights(gen: torch.Generator, experts: int, hidden: int, ffn: int, dtype: str,
                   device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded ``gate_up`` (experts, 2 x ffn, hidden) and ``down`` (experts, hidden, ffn), scaled so activations keep
    unit variance."""
    gate_up = normal(gen, (experts, 2 * ffn, hidden), dtype, device, std=hidden**-0.5)
    down = normal(gen, (experts, hidden, ffn), dtype, device, std=ffn**-0.5)
    return gate_up, down


def router_logits(gen: torch.Generator, tokens: int, experts: int, device: Any,
                  bias_gen: torch.Generator | None = None) -> torch.Tensor:
    """fp32 router logits (tokens, experts): unit-normal per token plus a per-expert bias of std 0.5 (drawn from
    ``bias_gen`` where given: one router shared by every rank), so some experts are popular and some starve, as
    trained routers' are (the imbalance is the case's workload)."""
    bias = torch.randn(experts, generator=bias_gen or gen) * 0.5
    return (torch.randn(tokens, experts, generator=gen) + bias).to(device)


def route(logits: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixtral's router: softmax in fp32 (float64 for a reference), ``topk``, weights renormalized over the chosen
    experts. Returns weights (tokens, top_k) and expert ids (tokens, top_k), best first."""
    probs = torch.softmax(logits, dim=-1, dtype=torch.promote_types(logits.dtype, torch.float32))
    weights, ids = torch.topk(probs, top_k, dim=-1)
    return weights / weights.sum(dim=-1, keepdim=True), ids


def swiglu(x: torch.Tensor, gate_up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """One expert's MLP on rows ``x``."""
    gate, up = F.linear(x, gate_up).chunk(2, dim=-1)
    return F.linear(F.silu(gate) * up, down)


def hf_expert_loop(x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor, gate_up: torch.Tensor,
                   down: torch.Tensor) -> torch.Tensor:
    """transformers' ``MixtralSparseMoeBlock`` / ``Qwen2MoeSparseMoeBlock`` expert loop: one-hot the choices, find
    the experts hit (``nonzero``: a host sync), and per expert ``torch.where`` its (token, slot) pairs (another
    sync), gather the tokens, run its MLP, scale by the router weight and ``index_add_`` into the output."""
    out = torch.zeros_like(x)
    mask = F.one_hot(ids, num_classes=gate_up.shape[0]).permute(2, 1, 0)
    hit = torch.greater(mask.sum(dim=(-1, -2)), 0).nonzero()
    for expert in hit:
        slot, token = torch.where(mask[expert].squeeze(0))
        current = swiglu(x[token], gate_up[expert.item()], down[expert.item()])
        out.index_add_(0, token, current * weights[token, slot, None].to(x.dtype))
    return out


def sort_by_expert(ids: torch.Tensor, experts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (token, slot) pairs ordered by expert, ties by position (a stable argsort of the flattened ids), and each
    expert's end row in that order as int32 (``torch._grouped_mm``'s ``offs``). Device ops only: no host sync
    (``scatter_add_`` counts; ``bincount`` would read its maximum back)."""
    flat = ids.flatten()
    order = torch.argsort(flat, stable=True)
    counts = torch.zeros(experts, dtype=torch.int32, device=ids.device)
    counts.scatter_add_(0, flat, torch.ones_like(flat, dtype=torch.int32))
    return order, torch.cumsum(counts, 0, dtype=torch.int32)


def grouped_mm(a: torch.Tensor, weight: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """``a`` (rows sorted by group) times each group's ``weight[g].T`` (weight: groups, N, K): rows
    ``ends[g-1]:ends[g]`` use group ``g``. One ``torch._grouped_mm`` launch where supported; float64 loops."""
    if grouped_mm_supported(a.device.type, a.dtype):
        return torch._grouped_mm(a, weight.transpose(-2, -1), offs=ends)
    if a.dtype != torch.float64:
        raise RuntimeError(f"torch._grouped_mm does not run on {a.device.type} in {a.dtype} in this torch "
                           f"(kernels.compat.grouped_mm_supported): the grouped arm has no kernel to time")
    bounds = [0, *ends.tolist()]
    return torch.cat([a[start:end] @ weight[group].t() for group, (start, end) in enumerate(zip(bounds, bounds[1:]))])


def grouped_swiglu(x_sorted: torch.Tensor, ends: torch.Tensor, gate_up: torch.Tensor,
                   down: torch.Tensor) -> torch.Tensor:
    """Every expert's MLP over its block of sorted rows: two grouped GEMMs and one SiLU x up between them."""
    gate, up = grouped_mm(x_sorted, gate_up, ends).chunk(2, dim=-1)
    return grouped_mm(F.silu(gate) * up, down, ends)


def grouped_moe(x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor, gate_up: torch.Tensor,
                down: torch.Tensor) -> torch.Tensor:
    """The MoE layer without a host sync: sort (token, slot) pairs by expert, gather the tokens once, two grouped
    GEMMs, scatter the rows back to (token, slot) order and sum each token's ``top_k`` rows weighted by the router."""
    tokens, top_k = ids.shape
    order, ends = sort_by_expert(ids, gate_up.shape[0])
    rows = grouped_swiglu(x[order // top_k], ends, gate_up, down)
    unsorted = torch.empty_like(rows)
    unsorted[order] = rows
    return (unsorted.view(tokens, top_k, -1) * weights[..., None].to(x.dtype)).sum(dim=1)


def imbalance(ids: torch.Tensor, experts: int) -> dict[str, float]:
    """Tokens per expert: the busiest expert's count over the mean, and the share of experts that got none."""
    counts = torch.bincount(ids.flatten(), minlength=experts).double()
    return {"tokens_per_expert_max_over_mean": float(counts.max() / counts.mean()),
            "experts_without_tokens": float((counts == 0).double().mean())}
