"""The kernel generator of chapter 20: a template search over CUDA kernels, honestly without a language model.

The seed's chapter 20 promised ``ai_kernel_generator.py --emit test.cu`` producing kernels that "compile via nvcc
and integrate into the harness without manual edits". This package does that with templates and a search, in the
manner of Kernel Tuner (compile, verify and benchmark a parameterized CUDA kernel from Python), but through the
plugin's own build, check and measurement modules:

1. ``families``: CUDA C++ templates (``templates/*.cu.in``) with typed parameter spaces (``space``), each with
   its case parts (inputs, eager baseline, float64 reference, check shapes with tails).
2. ``constraints``: reasons to reject before compiling (tails, CTA size, shared memory, occupancy by the
   occupancy formula) and after (spills and real registers from ``-Xptxas -v``).
3. ``render``: one ``.cu`` per candidate with a provenance header (family, parameters, template hash, version).
4. ``build_candidates``: ``pytest_aiperf.build.build_all`` (content-addressed cache) plus ptxas's report.
5. ``verification``: ``pytest_aiperf.checks.verify``, on the CPU through the candidate's host emulation, on the
   GPU through its launcher.
6. ``search`` and ``pipeline``: exhaustive for small spaces, seeded sampling with successive halving for large
   ones, every timing a ``measure.sample_pair`` against the incumbent; promotion only when the interval clears
   the incumbent by its noise margin. ``search_log`` records every candidate's fate.
7. ``registry`` (locked, atomic JSON) and ``emit`` (``--emit PATH``), driven by ``__main__``; ``gpu_search`` is
   the search on a device.
"""
