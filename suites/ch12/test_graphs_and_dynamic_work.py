"""Chapter 12: CUDA graphs and dynamic work.

- cuda_graph_replay: a Qwen2.5-0.5B decode step (~1,000 kernels) launched eagerly vs replayed from a captured graph.
- conditional_while_node: a loop until convergence driven by ``.item()`` each sweep vs a graph's WHILE node.
- persistent_work_queue: a persistent power-law SpMV with static row ranges vs warps pulling rows from an atomic queue.
- padded_shape_buckets: decode steps at changing batch sizes, eager at exact sizes vs padded to captured buckets.
- graph_branch_concurrency: 8 independent task towers captured as one serial chain vs as 8 parallel branches.

Each kernel module's header has the napkin math and the predicted H100 speedup; ``min_speedup`` here is the
conservative floor, the claim that the technique wins at all on any recent GPU; a case that measured below it on
some GPU says why in ``known_loss``.
"""

from __future__ import annotations

import pytest

from kernels.ch12 import (conditional_while_node, cuda_graph_replay, graph_branch_concurrency, padded_shape_buckets,
                          persistent_work_queue)
from pytest_aiperf import Case

CASES = [
    Case(name="cuda_graph_replay", baseline=cuda_graph_replay.baseline_eager_decode_step,
         optimized=cuda_graph_replay.optimized_graph_replay, inputs=cuda_graph_replay.inputs,
         work=cuda_graph_replay.work, needs_cuda=True, host_dispatch="timed",
         check_shapes=[(1, 3, 5), (2, 1, 1), (1, 7, 33)], time_shapes=[(24, 4, 512)],
         dtypes=["bf16"], min_speedup=2.0),
    Case(name="conditional_while_node", baseline=conditional_while_node.baseline_host_synced_loop,
         optimized=conditional_while_node.optimized_conditional_while_graph, inputs=conditional_while_node.inputs,
         reference=conditional_while_node.reference, work=conditional_while_node.work, needs_cuda=True,
         host_dispatch="timed", check_shapes=[(1, 1), (17, 23), (130, 67)], time_shapes=[(1024, 1024)],
         dtypes=["int32"], min_speedup=2.0),
    Case(name="persistent_work_queue", baseline=persistent_work_queue.baseline_static_row_ranges,
         optimized=persistent_work_queue.optimized_atomic_row_queue, inputs=persistent_work_queue.inputs,
         reference=persistent_work_queue.reference, work=persistent_work_queue.work, needs_cuda=True,
         check_shapes=[(1,), (33,), (1000,)], time_shapes=[(1048576,)], dtypes=["fp32"], min_speedup=1.05,
         known_loss="a tie: 1.02x on the H100 (1.01-1.03x over three processes) and 0.98-1.04x on an H200; both arms "
                    "run at ~0.7-0.77 TB/s, likely bound by the whole GPU's latency-limited gather rate rather than by "
                    "the most loaded warp, so the queue removes an imbalance off the critical path (not profiled)"),
    Case(name="padded_shape_buckets", baseline=padded_shape_buckets.baseline_eager_exact_shapes,
         optimized=padded_shape_buckets.optimized_padded_bucket_graphs, inputs=padded_shape_buckets.inputs,
         work=padded_shape_buckets.work, needs_cuda=True, host_dispatch="timed",
         check_shapes=[(1, 3, 5, 7), (2, 2, 3, 1), (1, 4, 9, 2)], time_shapes=[(24, 16, 32, 512)],
         dtypes=["bf16"], min_speedup=1.5),
    Case(name="graph_branch_concurrency", baseline=graph_branch_concurrency.baseline_serialized_graph,
         optimized=graph_branch_concurrency.optimized_forked_branch_graph, inputs=graph_branch_concurrency.inputs,
         reference=graph_branch_concurrency.reference, work=graph_branch_concurrency.work, needs_cuda=True,
         check_shapes=[(3, 17), (1, 5), (37, 130)], time_shapes=[(512, 512)], dtypes=["bf16"], min_speedup=1.5),
]


@pytest.mark.perf_pair(*CASES)
def test_optimized_arm_beats_baseline(pair, aiperf):
    aiperf.run(pair)
