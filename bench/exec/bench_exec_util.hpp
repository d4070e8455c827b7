#pragma once
// Shared by the exec benchmarks: MPI for the process (a singleton rank: the benchmarks run without mpirun) and a
// one-GPU cluster whose "HBM" is this process's memory.
#include <memory>

#include "core/cluster.hpp"
#include "exec/cpu/cpu_runtime.hpp"
#include "exec/cpu/mpi_comms.hpp"

namespace moesys::bench_exec {

/// MPI is initialised on first use and finalised at exit (the benchmark main is Google Benchmark's own).
inline void ensure_mpi() {
  static exec::cpu::MpiSession session;
}

inline std::unique_ptr<exec::cpu::CpuRuntime> make_runtime() {
  ensure_mpi();
  core::ClusterGeneratorOptions o;
  o.nodes = 1, o.gpus_per_node = 1, o.nics_per_node = 1;
  return std::make_unique<exec::cpu::CpuRuntime>(core::generate_cluster(o));
}

}  // namespace moesys::bench_exec
