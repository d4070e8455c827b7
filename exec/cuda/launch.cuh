#pragma once
// Helpers shared by the .cu files: grid-stride indexing, launch sizes and launch checks.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "exec/cuda/cuda_check.hpp"

namespace moesys::exec::cuda::kernels {

inline constexpr unsigned kThreads = 256;

__device__ inline std::int64_t grid_index() {
  return std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ inline std::int64_t grid_stride() {
  return std::int64_t(gridDim.x) * blockDim.x;
}

/// Blocks of kThreads for n elements, capped: the kernels loop with a grid stride beyond the cap.
inline unsigned blocks_for(std::int64_t n) {
  return unsigned(std::clamp<std::int64_t>((n + kThreads - 1) / kThreads, 1, std::int64_t{1} << 20));
}

inline void check_launch(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw core::RuntimeFailure(std::string("CUDA kernel launch failed: ") + what + ": " + cuda_error_string(e));
}

inline void require(bool ok, const char* what) {
  if (!ok) throw std::invalid_argument(std::string("cuda kernel: ") + what);
}

}  // namespace moesys::exec::cuda::kernels
