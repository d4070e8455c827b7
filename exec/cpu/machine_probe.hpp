#pragma once
// A short microbenchmark of this machine, run by every rank at once (so each rank sees its share of the cores
// and memory system), turned into a cluster description and a calibration that the simulator can use:
// one node with one "GPU" per rank whose kernels run at the rates measured per kernel class at the program's sizes
// (probe_kernel_rates; the peak is a representative GEMM's rate and the memory bandwidth memcpy's, for anything
// else), whose intra-node links carry the measured MPI all-to-all rate, and whose SSD is measured file I/O.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/calibration.hpp"
#include "core/cluster.hpp"
#include "core/runtime.hpp"

namespace moesys::exec::cpu {

struct ProbeShape {
  std::int64_t gemm_m = 256, gemm_n = 1024, gemm_k = 256;  // a representative GEMM (the expert FFN's)
  std::uint64_t all_to_all_bytes = 1 << 20;                 // per rank, the model's dispatch size
};

/// Kernel rates measured alone, and how many kernels the machine runs at those rates at once.
struct KernelRates {
  std::map<std::string, core::RateCurve> rates;  // work per second by kernel class (core/kernel_class.hpp) and size
  std::map<std::string, core::RateCurve> hot_rates;  // the same on operands the previous call touched on this core
  double cache_bytes = 0;               // a compute slot's private cache (its cores' L2)
  int threads_per_rank = 1;             // BLAS threads of one rank's kernels
  int compute_slots = 1;                // cores / threads_per_rank: kernels that run at full rate at once
};

struct MachineRates {
  int ranks = 1;
  double gemm_flop_per_s = 0;      // per rank, all ranks busy
  double copy_bytes_per_s = 0;     // memcpy traffic (read + write) per rank
  double all_to_all_bytes_per_s = 0;  // bytes each rank sends to others per second (through the runtime)
  double message_latency_s = 0;    // a tiny all-to-all of raw MPI, every rank in it at once: one step inside a call
  double latency_s = 0;            // a tiny all-to-all through the runtime: the call as the program meets it
  double busy_latency_s = 0;       // the same (a mean: its tail matters) while every rank's compute stream runs GEMMs
  double busy_all_to_all_bytes_per_s = 0;  // the all-to-all rate at the model's size beside compute (a mean)
  double progress_spin_s = 0;      // a waiting member's CPU time spent spinning at the start of its wait
  double progress_core_share = 0;  // then the share of a core its polls between sleeps take
  double op_overhead_s = 0;        // the runtime's fixed cost per kernel
  double stream_wake_s = 0;        // an idle stream worker's delay before it starts a ready operation
  double busy_compute_wake_s = 0;   // the compute worker's, after computing, while other ranks' kernels hold the cores
  double slot_handoff_s = 0;  // a compute slot idle between one rank's kernel and the next waiting rank's
  double ssd_read_bytes_per_s = 0, ssd_write_bytes_per_s = 0;
  KernelRates kernels;  // from probe_kernel_rates (empty: the roofline of the rates above)
};

/// Collective over MPI_COMM_WORLD: every rank measures, the slowest rank's rates are returned everywhere.
MachineRates probe_machine(const ProbeShape& shape);

/// The program's kernels at the sizes it runs them (a few per class, core/kernel_class.hpp), the same list on every
/// rank. As many ranks as there are compute slots run each at once, on operands of its sizes filled as a program's
/// are (fill_probe_operands), evicted from every cache before each call (cold: the program's kernels mostly meet
/// their operands written on another core or long before) and then hot (the previous call touched them on this
/// core); the result is work per second by class and size (the median call) for each, after taking off the
/// runtime's fixed cost per kernel `op_overhead_s`, and the number of kernels the cores run at once at that rate.
/// A CPU's kernels differ in cost per byte (an exp per element, a reduction, a copy) and its GEMMs in rate per
/// layout and size, so one GEMM rate and one memory bandwidth cannot describe them; ranks beyond the slots wait
/// for one (exec/cpu/compute_slots.hpp), which the simulator reproduces with the same slots
/// (NodeSpec::compute_slots) rather than by a rate measured under contention.
KernelRates probe_kernel_rates(const std::vector<core::Kernel>& samples, double op_overhead_s);

/// Fills the operands of a kernel bound to host memory with values a program's could hold: floating-point
/// operands with values of either sign between 0.05 and 2 in magnitude (activations, gradients, parameters; those
/// read as non-negative, model::ops::non_negative_operands, positive), index operands (model::ops::index_operands)
/// with 0, a valid token, expert, slot and row. Every index at 0 makes a gather or scatter touch one row, so their
/// rates are optimistic. Zeros would let libm's exp, tanh and
/// log take their fast paths: on zeros GeLU's backward and softmax cross-entropy ran 40% faster than in the
/// program. `outputs_only`: the operands a kernel writes, which an in-place kernel (scale, add_bias, AdamW) would
/// otherwise drift call after call (a repeated scale towards denormals).
void fill_probe_operands(core::Kernel& kernel, bool outputs_only = false);

/// One node with `ranks` GPUs built from the rates, and the calibration that makes the simulator's efficiencies 1
/// where the rates were measured directly.
core::ClusterSpec cluster_from_rates(const MachineRates& rates, const ProbeShape& shape, core::Calibration& cal);

}  // namespace moesys::exec::cpu
