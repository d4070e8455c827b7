#pragma once
// Memory planning: what every rank allocates in each tier, computed before the simulation from the policy and
// the routing plan. The rank program allocates exactly these items (persistent ones at start, activations
// layer by layer), so the plan's peak is the simulated peak; check_feasible turns a plan that does not fit into
// an InfeasibleError with the numbers.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/memory.hpp"
#include "policies/training/layout.hpp"
#include "policies/training/routing_plan.hpp"
#include "policies/training/training_config.hpp"

namespace moesys::policies::training {

/// Categories used in reports and errors (they are also the ledger tags).
enum class MemoryUse { parameters, gradients, optimizer, activations, buffers, expert_cache };
inline constexpr int kMemoryUseCount = 6;
const char* to_string(MemoryUse u);

struct Allocation {
  core::Tier tier = core::Tier::hbm;
  MemoryUse use = MemoryUse::parameters;
  std::uint64_t bytes = 0;
  std::string what;  // e.g. "dense fp16 parameters (zero3 shard)"
};

struct RankMemory {
  std::vector<Allocation> persistent;
  std::uint64_t peak_activation_bytes = 0;  // largest sum of activations held at once (HBM)
  /// Bytes per tier and use at the peak (persistent + peak activations).
  std::array<std::array<std::uint64_t, kMemoryUseCount>, core::kTierCount> at_peak{};
  std::uint64_t peak(core::Tier t) const;
};

struct MemoryPlan {
  std::vector<RankMemory> ranks;
  std::array<double, core::kTierCount> capacity_bytes{};  // per rank
  std::int64_t cache_entries = 0;                         // expert states the CPU cache holds per rank (offload = nvme)
  std::uint64_t expert_state_bytes = 0;                   // one expert's fp16 params + grads + optimizer states
};

MemoryPlan plan_memory(const TrainingConfig& c, const Layout& l, const RoutingPlan& routing);
/// Throws InfeasibleError naming the rank and tier that overflow the most, e.g. "rank 3 needs 52.3 GiB of HBM for
/// parameters 12.1 + gradients 0.1 + optimizer 30.2 + activations 10.0 + buffers 0.5, has 40.0 GiB".
void check_feasible(const MemoryPlan& plan);

/// Activations a rank holds while micro-batch `mb` is between its forward and backward, per layer, in program
/// order: embedding, then each transformer layer (attention + FFN), then the logits.
std::vector<std::uint64_t> activation_sequence(const core::ModelConfig& m, const MicroBatch& mb, const Layout& l,
                                               int rank);

}  // namespace moesys::policies::training
