"""Chapter 11, streams and concurrency: keeping the copy engines and the SMs busy at once (chunked copy-compute
pipelines, copies in both directions, work forked across streams inside a CUDA graph) and allocating without
synchronizing the device (the stream-ordered allocator). Every variant forks its side streams from torch's current
stream, so nothing starts before the timing's start event, and joins them back before returning, so the events see
everything. Memory handed between streams is owned by the caller, protected with ``record_stream``, or, for
``pipelined_copy_compute``'s ``staged`` buffer, allocated on the compute stream that reads it, which queues a wait
on every write to it from the copy-in stream before reading it and before the buffer returns to that stream's pool.
"""

from __future__ import annotations
