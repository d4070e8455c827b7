// The conformance cases on the CUDA runtime: every MPI rank (one per GPU) runs each case with a fresh runtime.
// Built with the CUDA runtime; main (exec/cuda/tests/cuda_test_main.cpp) reports "skipped" without a GPU per rank.
#include <gtest/gtest.h>

#include "contract_cases.hpp"
#include "exec/cuda/tests/cuda_test_util.hpp"

namespace moesys {
namespace {

void run_on_gpu(void (*program)(core::Runtime&)) {
  exec::cuda::CudaRuntime rt(exec::cuda::testing::test_cluster(exec::cuda::testing::world_size()));
  program(rt);
  rt.synchronize();
}

#define MOESYS_CONFORMANCE_TEST(name) \
  TEST(ConformanceCuda, name) {       \
    run_on_gpu(conformance::name);    \
  }
MOESYS_CONFORMANCE_CASES(MOESYS_CONFORMANCE_TEST)
#undef MOESYS_CONFORMANCE_TEST

}  // namespace
}  // namespace moesys
