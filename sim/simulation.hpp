#pragma once
// Runs a per-rank program on a simulated cluster. SimGrid allows one simulation per process: call
// simulate() once per process (tests run each case in its own process).
#include <array>
#include <functional>
#include <vector>

#include "core/calibration.hpp"
#include "core/cluster.hpp"
#include "core/runtime.hpp"
#include "sim/flow_engine.hpp"

namespace moesys::sim {

using RankProgram = std::function<void(core::Runtime&)>;

struct SimOptions {
  FlowMode flow_mode = FlowMode::aggregated;
  core::Calibration calibration = core::default_calibration();
  /// Flows in flight up to which they run as host-to-host communications; beyond, through carriers
  /// (sim/flow_carriers.hpp). The simulated times are the same either way; 0 sends every flow through a carrier.
  std::size_t direct_flow_limit = 600;
  /// Flows per carrier (each completion scans its carrier's own list of them); see sim/flow_engine.cpp.
  std::size_t flows_per_carrier = 32;
  /// Back-to-back GPU kernels of a stream run as one SimGrid execution where nothing observes the boundaries
  /// between them (sim/sim_runtime.hpp, KernelRun): the same simulated times, far fewer executions, and one span
  /// per such run instead of one per kernel, which the runtime contract (one span per operation) does not allow:
  /// off by default; the training and inference drivers turn it on unless a trace or validation needs kernels.
  bool coalesce_kernels = false;
  /// Flows that share their links only with each other end in closed form instead of as SimGrid actions
  /// (sim/solo_flows.hpp): the same simulated times up to rounding; off, every flow is a SimGrid action.
  bool solo_flows = true;
  /// The most flows such a closed-form component may hold; larger ones go to SimGrid.
  std::size_t max_solo_component = 256;
};

struct RankReport {
  std::vector<core::Span> spans;
  core::MemoryLedger memory{0, 0, 0};
  double finish_s = 0;
};

struct SimResult {
  double makespan_s = 0;  // simulated time at which the last rank finished
  std::vector<RankReport> ranks;
  std::array<double, 3> bytes_by_path_class{};  // intra-node, same leaf, across the spine
  std::uint64_t flows = 0;                       // network flows planned (a measure of simulator work)
  std::uint64_t solo_flows = 0;                  // of which ended in closed form (sim/solo_flows.hpp),
  std::uint64_t met_flows = 0;                   // and of which started solo and finished in SimGrid
};

/// Simulates `ranks` ranks (rank r on GPU r) each running `program`. Throws what a rank threw (e.g.
/// core::OutOfMemory), or core::RuntimeFailure naming the collectives left waiting if the ranks deadlock.
SimResult simulate(const core::ClusterSpec& spec, int ranks, const RankProgram& program, const SimOptions& options = {});

}  // namespace moesys::sim
