"""Chunked linear cross-entropy: the LM head's full logits then ``F.cross_entropy`` vs a fused linear + cross-entropy
that walks the tokens in chunks and never holds more than one chunk's logits (goal: peak memory).

- Baseline: Hugging Face's causal-LM loss: ``logits = h @ W.T`` in bf16 (tokens x vocab), ``F.cross_entropy(
  logits.float(), labels)`` (``ForCausalLMLoss`` upcasts), then ``autograd.grad`` for h and W. At the peak of the
  backward, log-softmax's saved fp32 output, the fp32 gradient of the log-probabilities and the fp32 gradient of
  the logits are all alive, each tokens x vocab x 4 B.
- Optimized: Liger-Kernel's fused linear cross-entropy, re-implemented: a custom ``autograd.Function`` whose
  forward takes ``chunk`` tokens at a time: their bf16 logits (one GEMM), one Triton kernel that computes each
  row's log-sum-exp online in fp32 and overwrites the logits in place with the gradient of the mean loss,
  ``(softmax - onehot) / tokens`` in bf16, then ``grad_h[chunk] = grad_logits @ W`` and ``grad_W += grad_logits.T @
  h[chunk]`` (``addmm_`` into a bf16 accumulator, as Liger does). The backward only scales the two stored gradients
  by the incoming one. Every label is a real token (no ignore index), as in the baseline's mean.

Shape ``(tokens, hidden, vocab, chunk)``. Timing shape (16384, 2048, 128256, 1024): Llama-3.2-1B's head (2048 wide,
128,256 tokens) over 8 x 2048 tokens, in 16 chunks of 1024 (the plan's; Liger's own rule, chunk logits about as
large as the hidden states, would take 512).

Napkin math (bf16; H100 SXM GEMMs ~720 TFLOP/s, copy ~3.0 TB/s; H200 the same GEMMs, ~4.25 TB/s):
- memory, baseline: bf16 logits 4.2 GB and their fp32 copy 8.4 GB, then log-softmax's fp32 output 8.4 GB (the
  copy freed after it); in backward, NLL's fp32 gradient 8.4 GB and log-softmax's 8.4 GB beside the saved output,
  then their bf16 cast 4.2 GB: a peak of ~25 GB, plus grad_W 0.53 GB and grad_h 67 MB.
- memory, optimized: grad_W 0.53 GB, grad_h 67 MB, one chunk's logits 0.26 GB and its per-row losses: ~0.86 GB
  (the backward scales the stored gradients in place, as Liger does, rather than allocating a second grad_W).
- predicted memory ratio: ~25-30x on both (the same bytes).
- time: the same three GEMMs of 8.6 TFLOP each, 25.8 TFLOP = ~36 ms in both arms. Baseline pointwise: ~84 GB moved
  by the cast, log-softmax, NLL and their backwards: ~28 ms (H100), ~20 ms (H200). Optimized: the CE kernel reads
  each logit twice and writes it once (12.6 GB, ~4.5 ms) and the bf16 accumulator is read and written per chunk
  (16 x 1.05 GB, ~5.6 ms): ~46 ms vs ~64 ms, 1.2-1.4x faster; recorded, not gated; ``max_slowdown=1.1``.
- floor: 70% of the low end of the memory ratio, 17.

Precision: both arms multiply in bf16 with fp32 accumulation, take the log-sum-exp in fp32 and round the logits'
gradient to bf16 once. The optimized arm also rounds grad_W to bf16 once per chunk. Measured on the CPU against
float64 at (37, 16, 300, 8), (64, 32, 1000, 16) and (256, 64, 4096, 32), three seeds: the loss's error equal to the
baseline's (1e-5 to 7e-5 relative), grad_h's too (0.17-0.21%), grad_W 0.27-0.36% (baseline 0.17-0.21%): within
the default bf16 rule, no declared tolerance.

Measured once on an H200 (2026-12-05, a first smoke run: one process, --aiperf-budget=1.5; not a recording):
16384x2048x128256x1024: 23.5 GiB -> 1.04 GiB, 22.56x [22.56, 22.56].
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from kernels import normal, seeded
from pytest_aiperf import Work

MAX_BLOCK = 4096


@triton.jit
def _ce_grad_kernel(logits_ptr, grad_ptr, labels_ptr, loss_ptr, rows, vocab, inv_tokens, ROWS: tl.constexpr,
                    BLOCK: tl.constexpr):
    """Rows of bf16 logits: each row's loss ``lse - logit[label]`` (fp32) out, ``(softmax - onehot) * inv_tokens``
    written to ``grad_ptr`` (the logits themselves on CUDA)."""
    r = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    live = r < rows
    r = tl.where(live, r, 0)  # rows past the end read row 0 (finite) and store nothing
    offs = tl.arange(0, BLOCK)
    m = tl.full([ROWS], float("-inf"), tl.float32)
    total = tl.zeros([ROWS], tl.float32)
    for start in range(0, vocab, BLOCK):
        x = tl.load(logits_ptr + r[:, None] * vocab + start + offs[None, :], mask=(start + offs < vocab)[None, :],
                    other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.max(x, 1))
        total = total * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new[:, None]), 1)
        m = m_new
    lse = m + tl.log(total)
    label = tl.load(labels_ptr + r)
    target = tl.load(logits_ptr + r * vocab + label).to(tl.float32)
    tl.store(loss_ptr + r, lse - target, mask=live)
    for start in range(0, vocab, BLOCK):
        cols = start + offs
        mask = live[:, None] & (cols < vocab)[None, :]
        x = tl.load(logits_ptr + r[:, None] * vocab + cols[None, :], mask=(cols < vocab)[None, :],
                    other=0.0).to(tl.float32)
        grad = (tl.exp(x - lse[:, None]) - tl.where(cols[None, :] == label[:, None], 1.0, 0.0)) * inv_tokens
        tl.store(grad_ptr + r[:, None] * vocab + cols[None, :], grad.to(grad_ptr.dtype.element_ty), mask=mask)


def cross_entropy_grad_(logits: torch.Tensor, labels: torch.Tensor, inv_tokens: float) -> torch.Tensor:
    """Per-row losses (fp32) of ``logits`` (rows, vocab, contiguous) against ``labels``; ``logits`` is overwritten
    with the gradient of ``inv_tokens x sum(losses)``. One program per row on CUDA, a tile of rows off it. Off CUDA
    the kernel writes the gradient in fp32 and PyTorch rounds it into the logits: the Triton interpreter converts
    fp32 to bf16 by truncation (triton 3.9, measured: half of unit-normal values differ from round-to-nearest, by
    up to 2^-7 relative), which would double the gradient's error."""
    rows, vocab = logits.shape
    on_cuda = logits.device.type == "cuda"
    loss = torch.empty(rows, dtype=torch.float32, device=logits.device)
    grad = logits if on_cuda else torch.empty(logits.shape, dtype=torch.float32, device=logits.device)
    block = min(MAX_BLOCK, triton.next_power_of_2(vocab))
    per_row = 1 if on_cuda else max(1, min(triton.next_power_of_2(rows), MAX_BLOCK // block))
    _ce_grad_kernel[(triton.cdiv(rows, per_row),)](logits, grad, labels, loss, rows, vocab, inv_tokens,
                                                   ROWS=per_row, BLOCK=block, num_warps=8)
    if not on_cuda:
        logits.copy_(grad)
    return loss


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``h @ weight.T`` against ``labels``, its gradients computed chunk by chunk in the
    forward (Liger's fused linear cross-entropy); backward scales them in place (no second grad_W: a second
    backward through a retained graph fails on the saved tensors' version instead of scaling twice)."""

    @staticmethod
    def forward(ctx: Any, h: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, chunk: int) -> torch.Tensor:
        tokens = h.shape[0]
        grad_h = torch.empty_like(h)
        grad_w = torch.zeros_like(weight)
        losses = torch.empty(tokens, dtype=torch.float32, device=h.device)
        for start in range(0, tokens, chunk):
            end = min(start + chunk, tokens)
            rows = h[start:end]
            logits = rows @ weight.t()
            losses[start:end] = cross_entropy_grad_(logits, labels[start:end], 1.0 / tokens)
            torch.mm(logits, weight, out=grad_h[start:end])
            grad_w.addmm_(logits.t(), rows)
        ctx.save_for_backward(grad_h, grad_w)
        return losses.sum() / tokens

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_h, grad_w = ctx.saved_tensors
        return grad_h.mul_(grad_loss.to(grad_h.dtype)), grad_w.mul_(grad_loss.to(grad_w.dtype)), None, None


def inputs(shape: tuple[int, ...], dtype: str, seed: int, device: Any) -> tuple[Any, ...]:
    """Final-norm hidden states h (tokens, hidden), unit-normal; the LM head W (vocab, hidden), std hidden^-1/2
    (logits of unit scale); next-token labels (int64); the chunk size."""
    tokens, hidden, vocab, chunk = shape
    gen = seeded(seed)
    h = normal(gen, (tokens, hidden), dtype, device)
    weight = normal(gen, (vocab, hidden), dtype, device, std=hidden**-0.5)
    labels = torch.randint(vocab, (tokens,), generator=gen).to(device)
    return h, weight, labels, chunk


def _leaves(h: torch.Tensor, weight: torch.Tensor) -> list[torch.Tensor]:
    return [h.detach().requires_grad_(), weight.detach().requires_grad_()]


def baseline_full_logits(h: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                         chunk: int) -> tuple[torch.Tensor, ...]:
    """The loss over the full logits upcast to fp32, and its gradients for h and W."""
    leaves = _leaves(h, weight)
    loss = F.cross_entropy((leaves[0] @ leaves[1].t()).float(), labels)
    return (loss.detach(), *torch.autograd.grad(loss, leaves))


def optimized_chunked_fused(h: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                            chunk: int) -> tuple[torch.Tensor, ...]:
    """The same loss and gradients, one chunk of logits at a time."""
    leaves = _leaves(h, weight)
    loss = ChunkedLinearCrossEntropy.apply(*leaves, labels, chunk)
    return (loss.detach(), *torch.autograd.grad(loss, leaves))


def work(shape: tuple[int, ...], dtype: str) -> Work:
    """Three GEMMs of 2 x tokens x hidden x vocab flops (logits, grad_h, grad_W); bytes: h and W read, grad_h and
    grad_W written once (the logits are the difference between the arms, not the work)."""
    tokens, hidden, vocab, _ = shape
    return Work(bytes=float(2 * 2 * (tokens * hidden + vocab * hidden)), flops=float(3 * 2 * tokens * hidden * vocab),
                items=float(tokens), item_name="tokens")
