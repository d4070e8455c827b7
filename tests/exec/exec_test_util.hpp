#pragma once
// Shared by the exec tests: the cluster a test run plays (2 nodes when the world is even, so the hierarchical
// all-to-all has both an intra-node and an inter-node step), and a CPU runtime on it.
#include <memory>

#include "core/cluster.hpp"
#include "exec/cpu/cpu_runtime.hpp"

namespace moesys::exec::testing {

inline core::ClusterSpec test_cluster(int world) {
  core::ClusterGeneratorOptions o;
  o.nodes = world % 2 == 0 && world > 1 ? 2 : 1;
  o.gpus_per_node = world / o.nodes;
  o.nics_per_node = 1;
  return core::generate_cluster(o);
}

inline std::unique_ptr<cpu::CpuRuntime> make_runtime() {
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  return std::make_unique<cpu::CpuRuntime>(test_cluster(world));
}

}  // namespace moesys::exec::testing
