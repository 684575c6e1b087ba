"""Chapter 10, tensor cores on Hopper: CUDA-core FMA vs wgmma, TMA pipelines with a persistent grid, fp8 GEMMs
with scales, GEMM epilogue fusion, and thread block clusters reducing through distributed shared memory."""

from __future__ import annotations
