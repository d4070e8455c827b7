#pragma once
// Runs a core::Kernel on a CUDA stream: GEMMs and attention through cuBLAS, TensorOps through the kernels of
// kernels.cuh. Operands are resolved to device-usable addresses by the runtime (`address`).
#include <cuda_runtime_api.h>

#include <functional>

#include "core/runtime.hpp"

struct cublasContext;

namespace moesys::exec::cuda {

struct KernelContext {
  cudaStream_t stream = nullptr;
  cublasContext* cublas = nullptr;  // bound to `stream`
  int* status = nullptr;            // device status word (kernels::StatusBit)
  bool allow_tf32 = false;
  std::function<void*(const core::Buffer&)> address;
};

/// Enqueues the kernel. Throws std::invalid_argument for a kernel without operands or with unsupported
/// dtypes / sizes (ElementwiseOp and GateOp describe work, not data), core::RuntimeFailure for CUDA errors.
void run_device_kernel(const core::Kernel& kernel, const KernelContext& ctx);

}  // namespace moesys::exec::cuda
