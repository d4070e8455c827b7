#include "policies/training/memory_plan.hpp"

#include <algorithm>
#include <cstdio>

#include "core/error.hpp"
#include "core/ledger_runtime.hpp"
#include "core/units.hpp"
#include "policies/training/rank_state.hpp"
#include "policies/training/training_plan.hpp"

namespace moesys::policies::training {

const char* to_string(MemoryUse u) {
  switch (u) {
    case MemoryUse::parameters:
      return "parameters";
    case MemoryUse::gradients:
      return "gradients";
    case MemoryUse::optimizer:
      return "optimizer";
    case MemoryUse::activations:
      return "activations";
    case MemoryUse::buffers:
      return "buffers";
    case MemoryUse::expert_cache:
      return "expert cache";
    case MemoryUse::kv_cache:
      return "kv cache";
  }
  return "?";
}

std::uint64_t RankMemory::peak(core::Tier t) const {
  std::uint64_t s = 0;
  for (auto b : at_peak[static_cast<std::size_t>(t)]) s += b;
  return s;
}

std::int64_t cache_entries(const TrainingConfig& c, const Layout& l, double dram_free_bytes) {
  const core::ModelConfig& m = c.model;
  // An entry holds an expert's values and optimizer states; its gradients come home to host memory apart.
  const double state = static_cast<double>(m.param_bytes_per_param() + m.optimizer_bytes_per_param()) *
                       static_cast<double>(m.expert_params_per_expert());
  double cache = c.policy.cache.capacity_gib * core::kGiB;
  if (cache <= 0) cache = dram_free_bytes;
  const std::int64_t all = std::int64_t{m.moe_layers()} * l.local_experts;
  std::int64_t entries = cache > 0 ? static_cast<std::int64_t>(cache / state) : 0;
  if (c.policy.cache.capacity_fraction > 0)
    entries = static_cast<std::int64_t>(c.policy.cache.capacity_fraction * static_cast<double>(all));
  return std::clamp<std::int64_t>(entries, 0, all);
}

void plan_memory(TrainingPlan& p) {
  const TrainingConfig& c = p.config;
  const core::NodeSpec& node = c.cluster.node;
  MemoryPlan& plan = p.memory;
  plan.capacity_bytes = {node.gpu.hbm_bytes, node.host_memory.capacity_bytes / node.gpus,
                         node.ssd.capacity_bytes / node.gpus};
  const double pe = static_cast<double>(c.model.expert_params_per_expert());
  plan.expert_state_bytes = static_cast<std::uint64_t>(c.model.training_bytes_per_param() * pe);
  // The LFU cache (nvme with 2D prefetch) gets what the expert gradients and the staging area leave of the host
  // share.
  plan.cache_entries = 0;
  if (c.policy.offload == Offload::nvme && c.policy.prefetch == Prefetch::routed) {
    const ResidencySettings r = residency_settings(p, 0);
    plan.cache_entries =
        cache_entries(c, p.layout, plan.capacity_bytes[1] - expert_host_bytes_besides_cache(expert_shape(p), r));
  }
  plan.ranks.clear();
  std::vector<RankCounters> counters(static_cast<std::size_t>(p.layout.ranks));
  const auto program = training_program(p, counters);
  for (int r = 0; r < p.layout.ranks; ++r) {
    core::LedgerRuntime ledger(c.cluster, r, p.layout.ranks);
    program(ledger);
    RankMemory rm;
    for (int t = 0; t < core::kTierCount; ++t)
      for (const auto& [tag, bytes] : ledger.memory().peak_by_tag(static_cast<core::Tier>(t)))
        for (int u = 0; u < kMemoryUseCount; ++u)
          if (tag == to_string(static_cast<MemoryUse>(u)))
            rm.at_peak[static_cast<std::size_t>(t)][static_cast<std::size_t>(u)] += bytes;
    plan.ranks.push_back(rm);
  }
}

void check_feasible(const MemoryPlan& plan) {
  static const char* kTierNames[] = {"HBM", "host memory", "SSD"};
  int worst_rank = -1, worst_tier = 0;
  double worst_excess = 0;
  for (std::size_t r = 0; r < plan.ranks.size(); ++r)
    for (int t = 0; t < core::kTierCount; ++t) {
      const double need = static_cast<double>(plan.ranks[r].peak(static_cast<core::Tier>(t)));
      const double excess = need - plan.capacity_bytes[static_cast<std::size_t>(t)];
      if (need > 0 && excess > 0 && excess > worst_excess) {
        worst_excess = excess;
        worst_rank = static_cast<int>(r);
        worst_tier = t;
      }
    }
  if (worst_rank < 0) return;
  const RankMemory& rm = plan.ranks[static_cast<std::size_t>(worst_rank)];
  const auto& uses = rm.at_peak[static_cast<std::size_t>(worst_tier)];
  char buf[96];
  std::snprintf(buf, sizeof buf, "%.1f",
                static_cast<double>(rm.peak(static_cast<core::Tier>(worst_tier))) / core::kGiB);
  std::string msg =
      "rank " + std::to_string(worst_rank) + " needs " + buf + " GiB of " + kTierNames[worst_tier] + " for ";
  bool first = true;
  for (int u = 0; u < kMemoryUseCount; ++u) {
    if (uses[static_cast<std::size_t>(u)] == 0) continue;
    std::snprintf(buf, sizeof buf, "%.1f", static_cast<double>(uses[static_cast<std::size_t>(u)]) / core::kGiB);
    msg += std::string(first ? "" : " + ") + to_string(static_cast<MemoryUse>(u)) + " " + buf;
    first = false;
  }
  std::snprintf(buf, sizeof buf, "%.1f", plan.capacity_bytes[static_cast<std::size_t>(worst_tier)] / core::kGiB);
  msg += std::string(", has ") + buf + " GiB";
  if (plan.capacity_bytes[static_cast<std::size_t>(worst_tier)] <= 0) msg += " (the cluster has no such tier)";
  throw core::InfeasibleError(msg);
}

}  // namespace moesys::policies::training
