#pragma once
// The routing of every micro-batch of every simulated step, computed before the simulation: tokens per rank,
// and per MoE layer the rows each rank sends to each member of its expert-parallel group and the rows each local
// expert computes, after the gate's capacity (and padding, for padded dispatch). The memory planner and the rank
// programs read the same plan, so the feasibility check sees exactly what the simulation will allocate.
#include <cstdint>
#include <vector>

#include "core/workload.hpp"

#include "policies/training/elastic_placement.hpp"
#include "policies/training/expert_replicas.hpp"
#include "policies/training/layout.hpp"
#include "policies/training/training_config.hpp"

namespace moesys::policies::training {

struct LayerRouting {
  std::vector<std::vector<std::int64_t>> send_rows;    // [rank][ep member] rows sent (dispatch direction)
  std::vector<std::vector<std::int64_t>> expert_rows;  // [rank][expert slot] rows computed (own experts, then
                                                       // the replicas in the spare slots)
  /// Rows `rank` receives from each member of its group (the combine direction sends these back).
  std::vector<std::int64_t> recv_rows(const Layout& l, int rank) const;
  std::int64_t rows_sent(int rank) const;
  std::int64_t rows_computed(int rank) const;
};

struct MicroBatch {
  std::vector<std::int64_t> tokens;  // [rank] tokens entering every layer (whole sequences, plus at most
                                     // one partial one when a multi-task share does not divide)
  std::vector<LayerRouting> layers;  // [MoE layer]
};

struct RoutingPlan {
  int micro_batches = 0;                       // per step, the same on every rank
  std::vector<std::vector<MicroBatch>> steps;  // [step][micro]
  std::int64_t tokens_per_step = 0;            // over all ranks
  std::int64_t sequences_per_step = 0;
  std::int64_t assignments = 0, dropped = 0;  // gate statistics over the whole plan
  std::int64_t padding_rows = 0;              // rows sent only to fill capacity (padded dispatch)
  TaskPlacement placement;                    // multi-task only
  std::vector<double> task_loads;             // multi-task only: measured tokens per step per task
  std::vector<std::vector<ReplicaMap>> replicas;  // [step][MoE layer]: the spare expert slots' contents
  /// Per-rank load imbalance of the experts' rows (max over mean, per MoE layer of a micro-batch), averaged.
  double rank_imbalance = 1;

  const MicroBatch& at(int step, int micro) const {
    return steps[static_cast<std::size_t>(step)][static_cast<std::size_t>(micro)];
  }
  /// Largest value over the plan of a per-rank quantity (for buffer sizes).
  std::int64_t max_rows_sent(int rank) const;
  std::int64_t max_rows_received(const Layout& l, int rank) const;
};

/// Builds the plan; InfeasibleError when the batch does not divide into ranks and micro-batches.
RoutingPlan build_routing_plan(const TrainingConfig& c, const Layout& l);

/// A generation run's routing: one step of one micro-batch per forward pass, `tokens[pass]` tokens on every rank
/// and `passes[pass][layer]` the gate's matrices. With c's dropless counted dispatch every routed row is computed,
/// by the experts' holders under the replicas the planner chose for the pass from the passes before it.
RoutingPlan build_generation_routing(const TrainingConfig& c, const Layout& l, const std::vector<std::int64_t>& tokens,
                                     const std::vector<std::vector<core::RoutingMatrix>>& passes);

}  // namespace moesys::policies::training
