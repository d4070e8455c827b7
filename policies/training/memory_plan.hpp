#pragma once
// Memory planning: what every rank holds in each tier at its peak, obtained by running the training program's
// own allocations on a ledger-only runtime (core/ledger_runtime.hpp) before anything is simulated or run, so the
// feasibility check sees exactly what the program allocates. check_feasible turns a plan that does not fit into
// an InfeasibleError with the numbers.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/memory.hpp"
#include "policies/training/layout.hpp"
#include "policies/training/training_config.hpp"

namespace moesys::policies::training {

/// Categories used in reports and errors; the program tags its allocations with these names.
enum class MemoryUse { parameters, gradients, optimizer, activations, buffers, expert_cache, kv_cache };
inline constexpr int kMemoryUseCount = 7;
const char* to_string(MemoryUse u);

struct RankMemory {
  /// Bytes per tier and use at the tier's peak.
  std::array<std::array<std::uint64_t, kMemoryUseCount>, core::kTierCount> at_peak{};
  std::uint64_t peak(core::Tier t) const;
};

struct MemoryPlan {
  std::vector<RankMemory> ranks;
  std::array<double, core::kTierCount> capacity_bytes{};  // per rank
  std::int64_t cache_entries = 0;                         // expert states the CPU cache holds per rank (offload = nvme)
  std::uint64_t expert_state_bytes = 0;                   // one expert's params + grads + optimizer states
};

/// Expert states the LFU cache in host memory holds (offload = nvme): the policy's capacity, or what is left of
/// `dram_free_bytes` (the rank's host-memory share after its other host buffers).
std::int64_t cache_entries(const TrainingConfig& c, const Layout& l, double dram_free_bytes);
/// Throws InfeasibleError naming the rank and tier that overflow the most, e.g. "rank 3 needs 52.3 GiB of HBM for
/// parameters 12.1 + gradients 0.1 + optimizer 30.2 + activations 10.0 + buffers 0.5, has 40.0 GiB".
void check_feasible(const MemoryPlan& plan);

}  // namespace moesys::policies::training
