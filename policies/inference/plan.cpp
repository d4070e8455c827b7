#include "policies/inference/plan.hpp"

#include "core/error.hpp"
#include "policies/inference/policies.hpp"
#include "policies/inference/program.hpp"

namespace moesys::policies::inference {

namespace {

using training::MemoryUse;

std::uint64_t use(const training::RankMemory& r, core::Tier t, MemoryUse u) {
  return r.at_peak[static_cast<std::size_t>(t)][static_cast<std::size_t>(u)];
}

/// The rank with the most HBM at its peak (ranks differ only by the routing their experts receive).
const training::RankMemory& fullest(const training::MemoryPlan& m) {
  const training::RankMemory* worst = &m.ranks.front();
  for (const auto& r : m.ranks)
    if (r.peak(core::Tier::hbm) > worst->peak(core::Tier::hbm)) worst = &r;
  return *worst;
}

bool fits(const InferenceConfig& c, const core::ClusterSpec& spec) {
  const training::TrainingPlan p = plan_program(c, spec, make_routing(c, "", "workload"));
  return static_cast<double>(fullest(p.memory).peak(core::Tier::hbm)) <= spec.node.gpu.hbm_bytes;
}

}  // namespace

training::TrainingPlan plan_program(const InferenceConfig& c, const core::ClusterSpec& spec,
                                    const RoutingTables& routing) {
  return training::make_generation_plan(program_config(c, spec), generation_settings(c), routing.passes);
}

MemoryPlan check_memory(const training::TrainingPlan& program, const InferenceConfig& c, const WeightSizes& w,
                        const core::ClusterSpec& spec) {
  const training::RankMemory& r = fullest(program.memory);
  MemoryPlan p;
  p.weights.hbm_weights = use(r, core::Tier::hbm, MemoryUse::parameters);
  p.weights.host_weights = use(r, core::Tier::dram, MemoryUse::parameters);
  p.weights.host_staging = use(r, core::Tier::dram, MemoryUse::buffers);
  p.kv_cache_bytes = use(r, core::Tier::hbm, MemoryUse::kv_cache);
  p.activation_bytes = use(r, core::Tier::hbm, MemoryUse::activations) + use(r, core::Tier::hbm, MemoryUse::buffers);
  p.hbm_capacity_bytes = spec.node.gpu.hbm_bytes;
  p.dram_capacity_bytes = spec.node.host_memory.capacity_bytes / spec.node.gpus;

  const double host = static_cast<double>(r.peak(core::Tier::dram));
  if (host > p.dram_capacity_bytes)
    throw core::InfeasibleError(c.policy + ": " + gib(host) + " of offloaded weights per GPU exceed the " +
                                gib(p.dram_capacity_bytes) + " of host memory per GPU");
  const double weights = static_cast<double>(p.weights.hbm_weights);
  if (weights > p.hbm_capacity_bytes) policy_info(c.policy).explain(w, c, weights, p.hbm_capacity_bytes);
  const double peak = static_cast<double>(r.peak(core::Tier::hbm));
  if (peak > p.hbm_capacity_bytes) {
    // The KV cache and the activations grow with the batch: the largest batch that fits, from the program's own
    // plan of smaller batches (bisection; every plan is a ledger run).
    int lo = 0, hi = c.batch;  // lo fits (0 trivially), hi does not
    while (hi - lo > 1) {
      InferenceConfig smaller = c;
      smaller.batch = lo + (hi - lo) / 2;
      (fits(smaller, spec) ? lo : hi) = smaller.batch;
    }
    const double left = p.hbm_capacity_bytes - weights;
    throw core::InfeasibleError(
        "batch of " + std::to_string(c.batch) + " sequences x " + std::to_string(c.max_context()) +
        " tokens does not fit: its KV cache needs " + gib(static_cast<double>(p.kv_cache_bytes)) +
        " and its activations " + gib(static_cast<double>(p.activation_bytes)) + ", but only " + gib(left) +
        " of the GPU's " + gib(p.hbm_capacity_bytes) + " of HBM are left after " + gib(weights) + " of " + c.policy +
        " weights; at most " + std::to_string(lo) + " sequences fit");
  }
  return p;
}

}  // namespace moesys::policies::inference
