// The conformance cases on the SimGrid runtime: 4 ranks on one simulated node (2 nodes x 2 GPUs would also
// exercise the network; one node keeps each case in milliseconds). SimGrid runs one simulation per process, so
// CTest runs every case in its own process (gtest_discover_tests).
#include <gtest/gtest.h>

#include "contract_cases.hpp"
#include "sim/simulation.hpp"

namespace moesys {
namespace {

void run_on_sim(void (*program)(core::Runtime&)) {
  core::ClusterGeneratorOptions o;
  o.nodes = 1, o.gpus_per_node = 4, o.nics_per_node = 1;
  sim::simulate(core::generate_cluster(o), 4, [&](core::Runtime& rt) { program(rt); });
}

#define MOESYS_CONFORMANCE_TEST(name) \
  TEST(ConformanceSim, name) {        \
    run_on_sim(conformance::name);    \
  }
MOESYS_CONFORMANCE_CASES(MOESYS_CONFORMANCE_TEST)
#undef MOESYS_CONFORMANCE_TEST

}  // namespace
}  // namespace moesys
