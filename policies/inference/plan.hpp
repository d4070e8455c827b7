#pragma once
// The memory plan of a run, per rank, checked before anything is simulated so that a run that cannot fit is
// bad input (exit 2) with the numbers, not an out-of-memory failure half-way.
#include <cstdint>

#include "core/cluster.hpp"
#include "policies/inference/policies.hpp"

namespace moesys::policies::inference {

struct MemoryPlan {
  Footprint weights;
  std::uint64_t kv_cache_bytes = 0;
  std::uint64_t activation_bytes = 0;
  double hbm_capacity_bytes = 0;   // per GPU
  double dram_capacity_bytes = 0;  // host memory per GPU (a node's memory shared by its GPUs)
  std::uint64_t hbm_bytes() const { return weights.hbm_weights + kv_cache_bytes + activation_bytes; }
};

/// Throws core::InfeasibleError when host memory cannot hold the offloaded weights, when the policy's weights
/// (a single layer, K slots, the whole model) cannot fit in HBM, or when the batch's KV cache and activations
/// do not fit beside them.
MemoryPlan plan_memory(const InferenceConfig& c, const WeightSizes& w, const WeightPolicy& policy,
                       std::int64_t max_expert_tokens, const core::ClusterSpec& spec);

}  // namespace moesys::policies::inference
