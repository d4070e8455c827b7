#pragma once
// The hardware model's efficiency parameters: one small table, calibrated once on published A100
// measurements (calibration/a100-measured.json), printed by `moesys calibration`, overridable from a file.
// No other constant in the model may be tuned; everything else comes from specifications.
// The defaults below are `moesys calibration --fit` rounded to three digits; hbm_efficiency and
// kernel_launch_s have no published point and keep engineering defaults (reported as uncalibrated).
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace moesys::core {

struct Calibration {
  double nvlink_efficiency = 0.745;       // large-transfer fraction of NVLink spec bandwidth
  double pcie_efficiency = 0.830;         // fraction of PCIe spec bandwidth for pinned copies
  double nic_efficiency = 0.960;           // fraction of NIC line rate reached by RDMA collectives
  double gemm_efficiency = 0.936;         // fraction of tensor-core peak for large GEMMs
  double hbm_efficiency = 0.8;            // fraction of HBM bandwidth for memory-bound kernels (uncalibrated)
  double step_latency_s = 3.09e-6;        // fixed cost of one collective step / one message
  double half_bandwidth_bytes = 8.81e4;    // message size at which a transfer reaches half its link rate
  double kernel_launch_s = 4e-6;          // fixed cost per GPU kernel (uncalibrated)
  /// Delay from the moment an idle stream's next operation becomes ready (its issue, or the event it waits for)
  /// to its start: a CPU rank's stream worker waking up. Measured on CPU ranks; 0 for GPUs (uncalibrated).
  double stream_wake_s = 0;
  /// The compute stream's wake-up instead, when every compute slot of its node is held as its operation becomes
  /// ready: on CPU ranks that oversubscribe the cores, the woken compute worker waits for a core until another
  /// rank's kernel thread ends its scheduler slice (they have the same priority). Measured; 0 (then stream_wake_s)
  /// on GPUs (uncalibrated).
  double busy_compute_wake_s = 0;
  /// Fixed cost of one collective call, paid once before its first step: its members meeting in the call. On CPU
  /// ranks a stream worker's wake-up and MPI's progress, measured; on GPUs NCCL's launch is inside the fitted
  /// step latency, so 0 there (uncalibrated).
  double collective_latency_s = 0;
  /// On CPU ranks (a node with compute slots), a member waiting for a collective or message polls MPI: it spins for
  /// up to `progress_spin_s` of a core, then sleeps between polls and takes `progress_core_share` of a core until
  /// the operation completes, cores the node's kernels run without (sim/progress_load.hpp). Measured on CPU
  /// ranks; GPUs progress communication on their own engines, so 0 there (uncalibrated).
  double progress_spin_s = 0;
  double progress_core_share = 0;

  /// Fraction of a link's (already efficiency-scaled) rate that messages of `bytes` use: 1 / (1 + sqrt(half / bytes)).
  /// It rises slowly with size, as NCCL's channel and protocol choice makes it; small messages waste link time.
  double message_efficiency(double bytes) const;
  double message_rate(double link_bytes_per_s, double bytes) const { return link_bytes_per_s * message_efficiency(bytes); }
};

/// Built-in calibration (the numbers above, derived in README "Calibration").
Calibration default_calibration();
/// Reads {"nvlink_efficiency": ..., ...}; unknown keys or values out of (0, 1] for efficiencies are ConfigErrors.
Calibration parse_calibration(const nlohmann::json& j, const std::string& file);
nlohmann::json calibration_to_json(const Calibration& c);

}  // namespace moesys::core
