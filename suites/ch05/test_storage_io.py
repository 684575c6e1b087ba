"""Chapter 5: storage and I/O.

- memmap_shard: one .npy file loaded per sample vs a batched gather from one memory-mapped shard into pinned memory.
- rle_mask_decode: COCO-style RLE masks expanded on the CPU and uploaded dense vs runs uploaded and expanded on the GPU.
- chunked_readinto: np.fromfile then a pageable upload vs chunked readinto pinned memory with overlapped uploads.
- contiguous_shard: one torch.save file loaded per sample vs one read of consecutive records from a raw shard.

Every case writes real files to a temporary folder and reads them through the page cache in both arms (see
``kernels/ch05/__init__.py``). Each kernel module's header has the napkin math and the predicted H100 speedup;
``min_speedup`` here is the conservative floor, the claim that the technique wins at all on any recent GPU host.
All cases also verify on the CPU, where the staging buffers are ordinary memory.

Every arm here does host work that is part of the lesson, so each case declares ``host_dispatch="timed"``: the
events start when the host starts the call.
"""

from __future__ import annotations

import pytest

from kernels.ch05 import chunked_readinto, contiguous_shard, memmap_shard, rle_mask_decode
from pytest_aiperf import Case

CASES = [
    Case(name="memmap_shard", baseline=memmap_shard.baseline_file_per_sample,
         optimized=memmap_shard.optimized_memmap_shard, inputs=memmap_shard.inputs,
         reference=memmap_shard.reference, work=memmap_shard.work, goal="throughput",
         check_shapes=[(7, 5, 9, 13), (3, 3, 1, 7), (10, 1, 5, 3)], time_shapes=[(1024, 256, 224, 224)],
         dtypes=["fp32"], host_dispatch="timed", min_speedup=1.5),
    Case(name="rle_mask_decode", baseline=rle_mask_decode.baseline_cpu_decode,
         optimized=rle_mask_decode.optimized_gpu_decode, inputs=rle_mask_decode.inputs,
         reference=rle_mask_decode.reference, work=rle_mask_decode.work,
         check_shapes=[(3, 7, 9), (1, 5, 3), (5, 11, 13)], time_shapes=[(128, 480, 640)],
         dtypes=["int8"], host_dispatch="timed", min_speedup=3.0),
    Case(name="chunked_readinto", baseline=chunked_readinto.baseline_fromfile,
         optimized=chunked_readinto.optimized_chunked_readinto, inputs=chunked_readinto.inputs,
         reference=chunked_readinto.reference, work=chunked_readinto.work,
         check_shapes=[(1001, 64), (4099, 4099), (1, 7)], time_shapes=[(33554432, 2097152)],
         dtypes=["int32"], host_dispatch="timed", min_speedup=1.3),
    Case(name="contiguous_shard", baseline=contiguous_shard.baseline_torch_load_per_sample,
         optimized=contiguous_shard.optimized_contiguous_shard, inputs=contiguous_shard.inputs,
         reference=contiguous_shard.reference, work=contiguous_shard.work, goal="throughput",
         check_shapes=[(7, 3, 5), (4, 4, 1), (9, 1, 13)], time_shapes=[(1024, 64, 2048)],
         dtypes=["int64"], host_dispatch="timed", min_speedup=3.0),
]


@pytest.mark.perf_pair(*CASES)
def test_optimized_arm_beats_baseline(pair, aiperf):
    aiperf.run(pair)
