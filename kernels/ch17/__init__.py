"""Chapter 17, routing and mixture of experts: tokens routed to experts (a grouped GEMM over sorted tokens, a fused
router, expert-parallel all-to-all), requests routed to LoRA adapters in one batch, to the replica holding their
prefix, and to batches of similar length."""

from __future__ import annotations
