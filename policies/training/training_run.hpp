#pragma once
// One training configuration from start to report: plan and check it (errors before any simulation), run the
// rank programs through a simulator, and summarise the last step. The simulator is passed in, so this library
// stays free of SimGrid (cli/ and tests/sim/ pass sim/training_simulator.hpp's sim_simulator).
#include <array>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/memory.hpp"
#include "core/trace.hpp"
#include "policies/training/training_config.hpp"
#include "policies/training/training_plan.hpp"

namespace moesys::policies::training {

struct SimulatedRank {
  std::vector<core::Span> spans;
  core::MemoryLedger memory{0, 0, 0};
};

/// What running the rank programs produced: on the simulator, or on a real runtime ("cpu", "cuda"), where the
/// network counters are not measured and stay zero.
struct SimulatedRun {
  std::vector<SimulatedRank> ranks;
  std::array<double, 3> bytes_by_path_class{};  // intra-node, same leaf, across the spine (whole run)
  std::uint64_t flows = 0;
  std::uint64_t solo_flows = 0;  // of `flows`, those that ended in closed form (sim/solo_flows.hpp)
  std::uint64_t met_flows = 0;   // and those that started in closed form and ended in SimGrid
  std::string runtime = "sim";
  double wall_s = 0;
};

using Simulator = std::function<SimulatedRun(const core::ClusterSpec&, int ranks,
                                             const std::function<void(core::Runtime&)>& program)>;

struct TrainingReport {
  nlohmann::json summary;             // see docs/training.md "What the numbers mean"
  std::vector<core::Span> last_step;  // spans of every rank inside the last step (when asked for)
};

/// Plans, checks, simulates and summarises. Throws ConfigError / InfeasibleError (bad input, before simulating)
/// or RuntimeFailure.
TrainingReport run_training(const TrainingConfig& c, const Simulator& simulate, bool keep_last_step_spans = false);
/// The report of a run of `plan`'s program (simulated, or measured on a real runtime).
TrainingReport summarize_training(const TrainingPlan& plan, const SimulatedRun& run,
                                  const std::vector<RankCounters>& counters, bool keep_last_step_spans = false);

}  // namespace moesys::policies::training
