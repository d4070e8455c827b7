// The conformance cases on the CPU runtime: every MPI rank runs each case with a fresh runtime (CTest runs this
// under mpirun with 2 ranks, and as a single process).
#include <gtest/gtest.h>

#include "contract_cases.hpp"
#include "exec_test_util.hpp"

namespace moesys {
namespace {

void run_on_cpu(void (*program)(core::Runtime&)) {
  auto rt = exec::testing::make_runtime();
  program(*rt);
  rt->synchronize();
}

#define MOESYS_CONFORMANCE_TEST(name) \
  TEST(ConformanceCpu, name) {        \
    run_on_cpu(conformance::name);    \
  }
MOESYS_CONFORMANCE_CASES(MOESYS_CONFORMANCE_TEST)
#undef MOESYS_CONFORMANCE_TEST

}  // namespace
}  // namespace moesys
