#pragma once
// Shared by the CUDA tests: the cluster a run plays (2 nodes when the world is even, so the hierarchical
// all-to-all has an intra-node and an inter-node step), and one CUDA and one CPU runtime per process, created on
// first use and destroyed by main before MPI ends (creating NCCL communicators per test would dominate the run).
#include <memory>

#include "core/cluster.hpp"
#include "exec/cpu/cpu_runtime.hpp"
#include "exec/cuda/cuda_runtime.hpp"

namespace moesys::exec::cuda::testing {

inline core::ClusterSpec test_cluster(int world) {
  core::ClusterGeneratorOptions o;
  o.nodes = world % 2 == 0 && world > 1 ? 2 : 1;
  o.gpus_per_node = world / o.nodes;
  o.nics_per_node = 1;
  o.gpu = "h100";
  return core::generate_cluster(o);
}

struct Runtimes {
  std::unique_ptr<cpu::CpuRuntime> cpu;
  std::unique_ptr<CudaRuntime> gpu;
};

inline Runtimes& runtimes() {
  static Runtimes r;
  return r;
}
inline int world_size() {
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}
inline CudaRuntime& gpu() {
  auto& r = runtimes();
  if (!r.gpu) r.gpu = std::make_unique<CudaRuntime>(test_cluster(world_size()));
  return *r.gpu;
}
inline cpu::CpuRuntime& host() {
  auto& r = runtimes();
  if (!r.cpu) r.cpu = std::make_unique<cpu::CpuRuntime>(test_cluster(world_size()));
  return *r.cpu;
}

}  // namespace moesys::exec::cuda::testing
