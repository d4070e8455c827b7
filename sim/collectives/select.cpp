// Which algorithms serve which operation, NCCL's default choice, and the plan executor.
#include <stdexcept>

#include "sim/collectives.hpp"
#include "sim/profile.hpp"

namespace moesys::sim {

const char* to_string(CollectiveOp op) {
  switch (op) {
    case CollectiveOp::all_reduce: return "allreduce";
    case CollectiveOp::reduce_scatter: return "reducescatter";
    case CollectiveOp::all_gather: return "allgather";
    case CollectiveOp::all_to_all: return "alltoall";
  }
  return "?";
}

core::CollectiveAlgo resolve_algo(CollectiveOp op, core::CollectiveAlgo requested) {
  using core::CollectiveAlgo;
  const bool a2a = op == CollectiveOp::all_to_all;
  if (requested == CollectiveAlgo::automatic) return a2a ? CollectiveAlgo::direct : CollectiveAlgo::ring;
  bool ok = a2a ? (requested == CollectiveAlgo::direct || requested == CollectiveAlgo::hierarchical)
                : requested == CollectiveAlgo::ring;
  if (!ok)
    throw std::invalid_argument(std::string("algorithm '") + core::to_string(requested) + "' does not implement " +
                                to_string(op) + " (valid: " + (a2a ? "auto, direct, hierarchical" : "auto, ring") + ")");
  return requested;
}

CollectivePlan plan_collective(const core::ClusterSpec& spec, const CollectiveCall& call, core::CollectiveAlgo algo) {
  switch (resolve_algo(call.op, algo)) {
    case core::CollectiveAlgo::ring: return plan_ring(spec, call);
    case core::CollectiveAlgo::direct: return plan_direct_all_to_all(spec, call);
    case core::CollectiveAlgo::hierarchical: return plan_hierarchical_all_to_all(spec, call);
    case core::CollectiveAlgo::automatic: break;
  }
  throw std::logic_error("unresolved collective algorithm");
}

void execute_plan(const CollectivePlan& plan, FlowEngine& flows, double step_latency_s, double call_latency_s) {
  if (call_latency_s > 0 && !plan.empty()) {
    profile::InSimgrid in;
    sg::sg4::this_actor::sleep_for(call_latency_s);
  }
  for (const Stage& stage : plan) {
    if (stage.latency_steps > 0) {
      profile::InSimgrid in;
      sg::sg4::this_actor::sleep_for(stage.latency_steps * step_latency_s);
    }
    flows.run(stage.transfers);
  }
}

}  // namespace moesys::sim
