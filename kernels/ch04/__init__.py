"""Chapter 4, distributed training: moving gradients, activations and parameters between the ranks of a data-,
tensor- or pipeline-parallel job at the interconnect's bandwidth instead of its latency or the host's. One
collective per bucket instead of per tensor, gradient all-reduces launched from backward hooks so they overlap the
rest of backward, gradients compressed to bf16 on the wire, a tensor-parallel all-gather split into a ring of
peer-to-peer steps hidden behind the matmul, activations handed to the next pipeline stage directly instead of
through host memory, and a ZeRO-style sharded optimizer update. Every variant runs on each rank of a world that the
plugin starts (NCCL on GPUs, gloo on the CPU), returns that rank's own result, waits on every asynchronous work
handle it started before returning, and creates no process group per call: the one extra group (a host gloo group
for staging) is created once per process and cached by world size.
"""

from __future__ import annotations
