#include "policies/inference/plan.hpp"

#include <cmath>

#include "core/error.hpp"

namespace moesys::policies::inference {

MemoryPlan plan_memory(const InferenceConfig& c, const WeightSizes& w, const WeightPolicy& policy,
                       std::int64_t max_expert_tokens, const core::ClusterSpec& spec) {
  MemoryPlan p;
  p.weights = policy.footprint(w, c);
  p.kv_cache_bytes = kv_cache_bytes(c, c.batch);
  p.activation_bytes = activation_bytes(c, c.batch, max_expert_tokens);
  p.hbm_capacity_bytes = spec.node.gpu.hbm_bytes;
  p.dram_capacity_bytes = spec.node.host_memory.capacity_bytes / spec.node.gpus;

  const double host = static_cast<double>(p.weights.host_weights + p.weights.host_staging);
  if (host > p.dram_capacity_bytes)
    throw core::InfeasibleError(c.policy + ": " + gib(host) + " of offloaded weights per GPU exceed the " +
                                gib(p.dram_capacity_bytes) + " of host memory per GPU");
  policy.check_fits(w, c, p.hbm_capacity_bytes);

  const double weights = static_cast<double>(p.weights.hbm_weights);
  const double batch_bytes = static_cast<double>(p.kv_cache_bytes + p.activation_bytes);
  if (weights + batch_bytes > p.hbm_capacity_bytes) {
    const double left = p.hbm_capacity_bytes - weights;
    // KV cache and activations both grow linearly with the batch.
    const auto most = static_cast<long long>(std::floor(left / (batch_bytes / c.batch)));
    throw core::InfeasibleError(
        "batch of " + std::to_string(c.batch) + " sequences x " + std::to_string(c.max_context()) +
        " tokens does not fit: its KV cache needs " + gib(static_cast<double>(p.kv_cache_bytes)) +
        " and its activations " + gib(static_cast<double>(p.activation_bytes)) + ", but only " + gib(left) +
        " of the GPU's " + gib(p.hbm_capacity_bytes) + " of HBM are left after " + gib(weights) + " of " + c.policy +
        " weights; at most " + std::to_string(most > 0 ? most : 0) + " sequences fit");
  }
  return p;
}

}  // namespace moesys::policies::inference
