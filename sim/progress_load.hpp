#pragma once
// The cores that waiting for communication takes on a node of CPU ranks (NodeSpec::compute_slots): a member of a
// collective or message is a thread that polls MPI until the operation completes, spinning at first and then
// sleeping between polls. Either way it takes a share of a core from the node's kernels, which the ranks' kernels
// then run without. A ProgressLoad puts that work on the node's compute slots for as long as it lives (the span
// of the operation on its stream).
//
// On a GPU, a communication kernel holds SMs (one per channel) from its launch to its end, and its loads and stores
// take HBM bandwidth, so a concurrent kernel runs on what is left: a GEMM on fewer SMs, a memory-bound kernel on
// less bandwidth. The model keeps one share per operation, the larger of the two (communication_share), and while
// operations are in flight the rank's GPU computes at (1 - the largest of their shares) of its speed (GpuLoad);
// measured kernels beside NCCL slow down by more than the SMs alone explain (NVIDIA/nccl#1428: a GEMM 1.76x,
// attention 1.83x beside an all-gather on A100).
#include <simgrid/s4u/Exec.hpp>
#include <simgrid/s4u/Host.hpp>
#include <vector>

#include "core/calibration.hpp"
#include "core/cluster.hpp"

namespace moesys::sim {

/// Share of `rank`'s GPU that a communication operation among `members` takes from concurrent kernels (in [0, 0.5]):
/// Calibration::comm_sm_share when set, else max(comm_kernel_sms / SMs, comm_hbm_traffic x link rate / usable HBM
/// bandwidth), the link rate being the NVLink (or PCIe) rate when a member shares the rank's node plus the rank's
/// share of its node's NICs when a member is on another node. 0 on CPU ranks (no GPU, NodeSpec::compute_slots).
double communication_share(const core::ClusterSpec& spec, const core::Calibration& cal, const std::vector<int>& members,
                           int rank);
/// Share of a GPU that a copy-engine collective (CollectiveAlgo::copy_engine) takes from concurrent kernels: no SMs,
/// only the HBM bandwidth of its copies, Calibration::ce_hbm_traffic x the copy engines' NVLink rate / usable HBM
/// bandwidth (comm_sm_share instead when set; 0 on CPU ranks).
double copy_engine_share(const core::ClusterSpec& spec, const core::Calibration& cal);
/// Every share an operation can take on this cluster, ascending, 0 first: one per kind of group (its other members
/// on the rank's node, on other nodes, both, none) and a copy-engine collective's on NVLink nodes. A GPU host has one
/// speed (SimGrid pstate) per level.
std::vector<double> communication_share_levels(const core::ClusterSpec& spec, const core::Calibration& cal);

/// The communication load on one rank's GPU: while operations are in flight, the GPU computes at (1 - the largest of
/// their shares) of its speed. Concurrent NCCL kernels hold their SMs each, but their traffic shares the links, so
/// the HBM bandwidth they take together is about what the busiest takes: the larger share is the nearer of the two
/// bounds. The speed is the GPU host's power state (one per level of communication_share_levels), so a call changes
/// one rate and creates no activity.
class GpuLoad {
 public:
  /// `gpu`: the rank's GPU host, whose power states follow `levels`; nullptr where kernels run elsewhere (CPU ranks).
  GpuLoad(simgrid::s4u::Host* gpu, std::vector<double> levels);
  GpuLoad(const GpuLoad&) = delete;
  GpuLoad& operator=(const GpuLoad&) = delete;
  void add_communication(double share);
  void remove_communication(double share);

 private:
  /// Sets the power state of the largest level in flight. Setting it is a simcall that lets the rank's other
  /// streams run and change the counts: they only mark the load for another pass.
  void reconcile();
  simgrid::s4u::Host* gpu_;
  std::vector<double> levels_;    // communication_share_levels
  std::vector<int> operations_;   // in flight per level
  unsigned long pstate_ = 0;      // the level the GPU computes at
  bool reconciling_ = false, changed_ = false;
};

class ProgressLoad {
 public:
  /// `slots`: the node's compute slots, or nullptr where kernels do not share cores with communication; `gpu`: the
  /// rank's GPU load, to which the operation adds `gpu_share` while it lives (nullptr on CPU ranks).
  ProgressLoad(simgrid::s4u::Host* slots, GpuLoad* gpu, const core::Calibration& cal, double gpu_share);
  /// Cancels what is still running: the poller stops when its operation completes.
  ~ProgressLoad();
  ProgressLoad(const ProgressLoad&) = delete;
  ProgressLoad& operator=(const ProgressLoad&) = delete;

 private:
  simgrid::s4u::ExecPtr spin_, poll_;
  GpuLoad* gpu_ = nullptr;
  double gpu_share_ = 0;
};

}  // namespace moesys::sim
