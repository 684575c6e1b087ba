"""Chapter 3, system tuning: how the host feeds the GPU (pinned staging, prefetch, loader workers, CPU threads).

What these cases cannot show on a cloud VM, and so do not claim: NUMA binding (pinning the process and its
pinned buffers to the socket nearest the GPU), IRQ affinity of the NIC and GPU interrupts, the CPU frequency
governor, and transparent or explicit huge pages for host buffers. All need root or a bare-metal host and
change results between hosts rather than between the arms of a pair.
"""

from __future__ import annotations
