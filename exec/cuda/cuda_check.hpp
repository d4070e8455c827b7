#pragma once
// Checks for every CUDA, cuBLAS and NCCL call of the CUDA runtime: a failing call becomes core::RuntimeFailure
// naming the call, the file and line, and the library's own error string, so that a failure on rank 37 of a
// multi-node job says what failed and where instead of surfacing later as garbage or a hang.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <string>

#include "core/error.hpp"

namespace moesys::exec::cuda {

[[noreturn]] inline void fail_call(const char* lib, const char* call, const char* file, int line,
                                   const std::string& why) {
  throw core::RuntimeFailure(std::string(lib) + " call failed at " + file + ":" + std::to_string(line) + ": " + call +
                             ": " + why);
}

inline std::string cuda_error_string(cudaError_t e) {
  return std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")";
}

}  // namespace moesys::exec::cuda

#define MOESYS_CUDA_CHECK(call)                                                              \
  do {                                                                                       \
    const cudaError_t moesys_err_ = (call);                                                  \
    if (moesys_err_ != cudaSuccess)                                                          \
      ::moesys::exec::cuda::fail_call("CUDA", #call, __FILE__, __LINE__,                     \
                                      ::moesys::exec::cuda::cuda_error_string(moesys_err_)); \
  } while (0)

#define MOESYS_CUBLAS_CHECK(call)                                                                         \
  do {                                                                                                    \
    const cublasStatus_t moesys_st_ = (call);                                                             \
    if (moesys_st_ != CUBLAS_STATUS_SUCCESS)                                                              \
      ::moesys::exec::cuda::fail_call(                                                                    \
          "cuBLAS", #call, __FILE__, __LINE__,                                                            \
          std::string(cublasGetStatusName(moesys_st_)) + " (" + cublasGetStatusString(moesys_st_) + ")"); \
  } while (0)

// ncclInProgress is not an error: non-blocking communicators return it while an operation is being set up
// (the caller then polls ncclCommGetAsyncError with a deadline, see NcclComms::settle).
#define MOESYS_NCCL_CHECK(call)                                                                           \
  do {                                                                                                    \
    const ncclResult_t moesys_nr_ = (call);                                                               \
    if (moesys_nr_ != ncclSuccess && moesys_nr_ != ncclInProgress)                                        \
      ::moesys::exec::cuda::fail_call("NCCL", #call, __FILE__, __LINE__, ncclGetErrorString(moesys_nr_)); \
  } while (0)
