// The calling convention between CUDA sources and pytest_aiperf.build.CudaLibrary (always on the include path).
//
// Every launcher is `AIPERF_EXPORT int name(args..., cudaStream_t stream)`: tensors arrive as pointers, Python
// ints as int64_t, Python floats as double, and the stream is torch's current stream. A launcher enqueues its
// kernels on that stream and ends with AIPERF_RETURN_LAUNCH_ERROR(), so a bad launch configuration or a missing
// kernel image comes back to Python as an exception naming the launcher.
#pragma once

#include <cstdint>
#include <cuda_runtime.h>

#define AIPERF_EXPORT extern "C" __attribute__((visibility("default")))
#define AIPERF_RETURN_LAUNCH_ERROR() return static_cast<int>(cudaGetLastError())

AIPERF_EXPORT const char* aiperf_error_string(int code) {
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}
