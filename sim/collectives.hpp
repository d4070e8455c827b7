#pragma once
// Collective algorithms of the simulator, modelled after NCCL's: each algorithm turns one collective call into
// stages; a stage is a set of concurrent transfers plus a number of algorithm steps, each costing the
// calibrated per-step latency. Stages run one after another.
//
// Ring algorithms are simulated in lock-step: every step of a ring moves the same chunk along the same
// edges, so the steps are merged into one flow per ring edge carrying all of them (the per-step latency is
// still paid per step). This keeps an all-reduce on thousands of GPUs to a few flows per GPU.
#include <string>
#include <vector>

#include "core/cluster.hpp"
#include "core/runtime.hpp"
#include "sim/flow_engine.hpp"

namespace moesys::sim {

enum class CollectiveOp { all_reduce, reduce_scatter, all_gather, all_to_all };
const char* to_string(CollectiveOp op);

struct CollectiveCall {
  CollectiveOp op = CollectiveOp::all_reduce;
  std::vector<int> members;  // global GPU ids, in group order
  double bytes = 0;          // nccl-tests size (see core/runtime.hpp); unused for all_to_all
  std::vector<std::vector<double>> matrix;  // all_to_all: matrix[i][j] bytes from member i to member j
};

struct Stage {
  std::vector<Transfer> transfers;
  int latency_steps = 0;
};

using CollectivePlan = std::vector<Stage>;

/// Plans for each algorithm (one file each under sim/collectives/).
CollectivePlan plan_ring(const core::ClusterSpec& spec, const CollectiveCall& call);
CollectivePlan plan_direct_all_to_all(const core::ClusterSpec& spec, const CollectiveCall& call);
CollectivePlan plan_hierarchical_all_to_all(const core::ClusterSpec& spec, const CollectiveCall& call);

/// The algorithms each operation accepts; `automatic` resolves to NCCL's own choice (ring for all-reduce,
/// reduce-scatter and all-gather; direct for all-to-all). Throws std::invalid_argument naming the valid ones.
core::CollectiveAlgo resolve_algo(CollectiveOp op, core::CollectiveAlgo requested);
CollectivePlan plan_collective(const core::ClusterSpec& spec, const CollectiveCall& call, core::CollectiveAlgo algo);

/// Runs a plan in the calling actor: per stage, the latency, then the flows.
/// Runs a plan's stages in order: each stage's latency steps, then its transfers. `call_latency_s` is paid once
/// before the first stage (Calibration::collective_latency_s; 0 for point-to-point messages).
void execute_plan(const CollectivePlan& plan, FlowEngine& flows, double step_latency_s, double call_latency_s = 0);

}  // namespace moesys::sim
