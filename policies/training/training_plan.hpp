#pragma once
// Everything decided before the simulation starts, shared read-only by all rank programs: the configuration,
// the parallel layout, the routing of every micro-batch, and the memory plan (already checked to fit).
#include <functional>
#include <vector>

#include "core/runtime.hpp"
#include "policies/training/layout.hpp"
#include "policies/training/memory_plan.hpp"
#include "policies/training/routing_plan.hpp"
#include "policies/training/training_config.hpp"

namespace moesys::policies::training {

struct TrainingPlan {
  TrainingConfig config;
  Layout layout;
  RoutingPlan routing;
  MemoryPlan memory;
};

/// Validates the configuration as a whole and plans it. Throws InfeasibleError with the numbers when the
/// experts, ranks or batch do not divide, when the hierarchical all-to-all does not fit the groups, or when
/// any rank's memory does not fit its tiers.
TrainingPlan make_training_plan(const TrainingConfig& c);
/// Fills p.memory by running the training program's allocations for every rank on a ledger-only runtime.
void plan_memory(TrainingPlan& p);

/// What the rank programs count while they run (offload and cache behaviour), one entry per rank.
struct RankCounters {
  std::int64_t expert_fetches = 0;     // expert parameter copies to the GPU
  std::int64_t wasted_fetches = 0;     // fetched but no token came
  std::int64_t on_demand_fetches = 0;  // needed but not prefetched: fetched after the count exchange
  std::int64_t cache_hits = 0, cache_misses = 0, cache_evictions = 0;
  double ssd_read_bytes = 0, ssd_write_bytes = 0;
  std::vector<double> losses;  // real runtimes: mean training loss of this rank's last micro-batch, per step
  /// Real runtimes: the gate's token counts per expert, [step * micro-batches + micro][MoE layer][expert].
  std::vector<std::vector<std::vector<std::int64_t>>> routing;
};

/// The per-rank training program (run it on every rank). `counters` must hold one entry per rank and outlive
/// the run; step s's work is bracketed by a phase span named "step s".
std::function<void(core::Runtime&)> training_program(const TrainingPlan& plan, std::vector<RankCounters>& counters);

}  // namespace moesys::policies::training
