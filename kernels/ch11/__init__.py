"""Chapter 11, streams and concurrency: keeping the copy engines and the SMs busy at once (chunked copy-compute
pipelines, copies in both directions, work forked across streams inside a CUDA graph) and allocating without
synchronizing the device (the stream-ordered allocator). Every variant forks its side streams from torch's current
stream, so nothing starts before the timing's start event, and joins them back before returning, so the events see
everything; memory handed between streams is either owned by the caller or protected with ``record_stream``.
"""

from __future__ import annotations
