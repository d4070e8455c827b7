#pragma once
// Turns a set of concurrent GPU-to-GPU transfers into SimGrid flows and waits for them.
//
// Every transfer carries the size of the messages it stands for: messages of that size use links with
// Calibration::message_efficiency (the ramp that NCCL's channel and protocol choice produces). When transfers
// are merged (see Platform), the merged flow's efficiency is the byte-weighted harmonic mean of theirs, so it
// uses exactly the link capacity they would have used together.
#include <array>
#include <cstdint>
#include <vector>

#include "core/calibration.hpp"
#include "sim/flow_carriers.hpp"
#include "sim/platform.hpp"
#include "sim/solo_flows.hpp"

namespace moesys::sim {

struct Transfer {
  int src_gpu = 0;
  int dst_gpu = 0;
  double bytes = 0;               // total bytes this transfer moves
  double message_bytes = 0;       // size of one message of the algorithm (drives the rate ramp)
  double bandwidth_fraction = 1;  // share of the rate the payload gets (the protocol's, NVLS's reduction rate)
  bool network_message = false;   // an NVLink leg of a message that crosses the network (PXN): the network's ramp
  bool point_to_point = false;    // NCCL's send/receive path (all-to-all): inside a node, the point-to-point ramp
  double ramp_half_bytes = 0;     // > 0: the transfer's own ramp on message_bytes instead of its path class's
  bool copy_engine = false;       // a copy engine's DMA: no protocol ramp, the bandwidth fraction alone
  double rate_cap = 0;            // > 0: at most this many bytes/s whatever the links offer (NCCL's channels)
};

/// The share of its links' (efficiency-scaled) rate a transfer gets: its message's ramp
/// (Calibration::message_efficiency, or the transfer's own ramp_half_bytes; none for a copy engine's) times its
/// bandwidth fraction.
double transfer_efficiency(const core::Calibration& cal, const Transfer& t, bool network);

struct Stage;

enum class FlowMode { aggregated, detailed };

/// How the engine turns transfers into flows; every field is documented where users set it (SimOptions).
struct FlowOptions {
  FlowMode mode = FlowMode::aggregated;
  std::size_t direct_flow_limit = 600;
  std::size_t flows_per_carrier = 32;
  bool solo_flows = true;
  std::size_t max_solo_component = 256;
};

class FlowEngine {
 public:
  FlowEngine(const Platform& platform, const core::Calibration& cal, const FlowOptions& options);
  ~FlowEngine();

  /// Runs all transfers concurrently; blocks the calling actor until the last byte has arrived.
  /// Runs a stage's transfers (sim/collectives.hpp) as flows and waits for them.
  void run(const Stage& stage);
  /// One copy of `bytes` between host memory and its SSD over their route, at the ramp of message_efficiency.
  void copy(sg::sg4::Host* from, sg::sg4::Host* to, double bytes);
  /// A GPU copy engine's copy between a GPU and host memory: Calibration::copy_setup_s, then the route's full rate.
  void engine_copy(sg::sg4::Host* from, sg::sg4::Host* to, double bytes);
  /// A copy engine's copy between two GPUs of a node: over NVLink at Calibration::ce_nvlink_efficiency of the
  /// spec rate (the links hold nvlink_efficiency of it), over PCIe as a host copy.
  void peer_copy(int src_gpu, int dst_gpu, double bytes);

  FlowMode mode() const { return mode_; }
  /// Bytes moved so far per path class (intra-node, same leaf, across the spine).
  const std::array<double, kPathClassCount>& bytes_by_class() const { return bytes_by_class_; }
  /// Flows planned so far, however they ran (solo or in SimGrid).
  std::uint64_t flows_started() const { return flows_started_; }
  /// Of those, the flows that ended solo (sim/solo_flows.hpp).
  std::uint64_t solo_flows() const { return solo_.solo_flows(); }
  std::uint64_t met_flows() const { return solo_.met_flows(); }

 private:
  /// Calls f(const Transfer&) for every transfer of the stage as it crosses the hardware: with PXN, a transfer
  /// between rails becomes two running at once (see pxn_proxy).
  template <typename F>
  void for_each_routed_transfer(const Stage& stage, F&& f) const;
  /// NCCL's PXN: a message to a GPU on another node and another rail first crosses the NVSwitch to the GPU of the
  /// source node that sits on the destination's rail, whose NIC sends it; pipelined in chunks, so both legs run
  /// at once. The GPU that forwards, or -1 when the transfer stays as it is (same node, same NIC, no NVSwitch).
  int pxn_proxy(int src_gpu, int dst_gpu) const;
  void plan_detailed(const Stage& stage, std::vector<Flow>& flows) const;
  void plan_aggregated(const Stage& stage, std::vector<Flow>& flows) const;
  /// Starts the flows in SimGrid and blocks until all have finished: as host-to-host communications while few are in
  /// flight (start_and_wait_direct), through the carriers otherwise.
  void start_and_wait(const std::vector<Flow>& flows);
  void start_and_wait_direct(const std::vector<Flow>& flows);
  void engine_copy(sg::sg4::Host* from, sg::sg4::Host* to, double bytes, double efficiency);
  sg::sg4::CommPtr start(const Flow& f);

  const Platform& platform_;
  core::Calibration cal_;
  FlowMode mode_;
  bool pxn_;  // the cluster's core::NicSpec::pxn
  std::array<double, kPathClassCount> bytes_by_class_{};
  std::uint64_t flows_started_ = 0;
  std::size_t direct_flow_limit_, flows_per_carrier_;
  std::size_t direct_in_flight_ = 0;  // host-to-host flows started and not yet waited for
  FlowCarriers carriers_;
  SoloFlows solo_;  // runs flows alone on their links in closed form, the others through start_and_wait
};

}  // namespace moesys::sim
