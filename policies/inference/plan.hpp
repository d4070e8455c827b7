#pragma once
// The memory plan of a run, per rank, from the program itself: the generation program's allocations run on a
// ledger-only runtime (training::plan_memory), read back by use. It is checked before anything is simulated or
// run, so that a run that cannot fit is bad input (exit 2) with the numbers, not an out-of-memory failure half-way.
#include <cstdint>

#include "core/cluster.hpp"
#include "policies/inference/routing.hpp"
#include "policies/inference/sizes.hpp"
#include "policies/training/training_plan.hpp"

namespace moesys::policies::inference {

/// What the program keeps where, per rank, at its HBM peak (bytes).
struct Footprint {
  std::uint64_t hbm_weights = 0;   // resident weights plus slots or layer buffers
  std::uint64_t host_weights = 0;  // weights kept in host memory
  std::uint64_t host_staging = 0;  // host buffers: pinned staging for pageable copies, uploads
};

struct MemoryPlan {
  Footprint weights;
  std::uint64_t kv_cache_bytes = 0;
  std::uint64_t activation_bytes = 0;  // activations and the exchange / workspace buffers
  double hbm_capacity_bytes = 0;       // per GPU
  double dram_capacity_bytes = 0;      // host memory per GPU (a node's memory shared by its GPUs)
  std::uint64_t hbm_bytes() const { return weights.hbm_weights + kv_cache_bytes + activation_bytes; }
};

/// The generation program of run `c` planned on `spec`, its memory measured on the ledger (not yet checked).
training::TrainingPlan plan_program(const InferenceConfig& c, const core::ClusterSpec& spec,
                                    const RoutingTables& routing);

/// Reads the program's ledger plan and checks it. Throws core::InfeasibleError when host memory cannot hold the
/// offloaded weights, when the policy's weights cannot fit in HBM (the policy says which unit: a single layer, K
/// slots, the whole model), or when the batch's KV cache and activations do not fit beside them (naming the
/// largest batch that fits, found by planning smaller ones).
MemoryPlan check_memory(const training::TrainingPlan& program, const InferenceConfig& c, const WeightSizes& w,
                        const core::ClusterSpec& spec);

}  // namespace moesys::policies::inference
