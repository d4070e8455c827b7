#pragma once
// A short microbenchmark of this machine, run by every rank at once (so each rank sees its share of the cores
// and memory system), turned into a cluster description and a calibration that the simulator can use:
// one node with one "GPU" per rank whose peak is the measured GEMM rate, whose memory bandwidth is the rate at which
// the runtime's own memory-bound kernels stream (GeLU, AdamW), whose intra-node links carry the measured MPI all-to-all rate, and whose SSD is measured file I/O.
#include <cstdint>
#include <string>

#include "core/calibration.hpp"
#include "core/cluster.hpp"

namespace moesys::exec::cpu {

struct ProbeShape {
  std::int64_t gemm_m = 256, gemm_n = 1024, gemm_k = 256;  // a representative GEMM (the expert FFN's)
  std::uint64_t all_to_all_bytes = 1 << 20;                 // per rank, the model's dispatch size
  // The model's own shapes for its memory-bound kernels: tokens per rank, hidden, vocabulary, FFN width.
  std::int64_t tokens = 256, hidden = 256, vocab = 1024, ffn = 1024;
};

struct MachineRates {
  int ranks = 1;
  double gemm_flop_per_s = 0;      // per rank, all ranks busy
  double copy_bytes_per_s = 0;     // memcpy traffic (read + write) per rank
  double stream_bytes_per_s = 0;   // traffic of the model's memory-bound kernels, at its shapes, per rank
  double all_to_all_bytes_per_s = 0;  // bytes each rank sends to others per second
  double latency_s = 0;            // a small all-reduce
  double op_overhead_s = 0;        // the runtime's fixed cost per kernel
  double ssd_read_bytes_per_s = 0, ssd_write_bytes_per_s = 0;
};

/// Collective over MPI_COMM_WORLD: every rank measures, the slowest rank's rates are returned everywhere.
MachineRates probe_machine(const ProbeShape& shape);

/// One node with `ranks` GPUs built from the rates, and the calibration that makes the simulator's efficiencies 1
/// where the rates were measured directly.
core::ClusterSpec cluster_from_rates(const MachineRates& rates, const ProbeShape& shape, core::Calibration& cal);

}  // namespace moesys::exec::cpu
