#include "policies/training/memory_plan.hpp"

#include <algorithm>
#include <cstdio>

#include "core/error.hpp"
#include "core/units.hpp"
#include "policies/training/model_costs.hpp"

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
  }
  return "?";
}

std::uint64_t RankMemory::peak(core::Tier t) const {
  std::uint64_t s = 0;
  for (auto b : at_peak[static_cast<std::size_t>(t)]) s += b;
  return s;
}

std::vector<std::uint64_t> activation_sequence(const core::ModelConfig& m, const MicroBatch& mb, const Layout&,
                                               int rank) {
  const std::int64_t n = mb.tokens[static_cast<std::size_t>(rank)];
  std::vector<std::uint64_t> seq = {embedding_activation_bytes(m, n)};
  int moe = 0;
  for (int layer = 0; layer < m.layers; ++layer) {
    std::uint64_t b = attention_activation_bytes(m, n);
    if (m.is_moe_layer(layer)) {
      const LayerRouting& lr = mb.layers[static_cast<std::size_t>(moe++)];
      b += moe_activation_bytes(m, n, lr.rows_computed(rank), lr.rows_sent(rank));
    } else {
      b += dense_ffn_activation_bytes(m, n);
    }
    seq.push_back(b);
  }
  seq.push_back(logits_activation_bytes(m, n));
  return seq;
}

namespace {

std::uint64_t ceil_div(std::uint64_t n, std::uint64_t k) {
  return (n + k - 1) / k;
}

/// The persistent allocations of one rank (identical on every rank except for routing-sized buffers).
std::vector<Allocation> persistent_items(const TrainingConfig& c, const Layout& l, const RoutingPlan& routing, int rank,
                                         MemoryPlan& plan) {
  using core::Tier;
  const core::ModelConfig& m = c.model;
  const TrainingPolicy& p = c.policy;
  const std::uint64_t a = static_cast<std::uint64_t>(m.param_bytes_per_param());
  const std::uint64_t g = static_cast<std::uint64_t>(m.grad_bytes_per_param());
  const std::uint64_t o = static_cast<std::uint64_t>(m.optimizer_bytes_per_param());
  const std::uint64_t world = static_cast<std::uint64_t>(l.world), shard = static_cast<std::uint64_t>(l.node_ranks);
  std::vector<Allocation> items;
  auto add = [&](Tier t, MemoryUse u, std::uint64_t bytes, std::string what) {
    if (bytes > 0) items.push_back({t, u, bytes, std::move(what)});
  };

  // ---- dense parameters (the token table is handled apart when it is partitioned) ----
  const std::uint64_t table = static_cast<std::uint64_t>(embedding_tensors(m)[0]);
  std::uint64_t dense = static_cast<std::uint64_t>(m.dense_params() + m.gate_params());
  const bool partition = p.embedding == Embedding::partition;
  if (partition) dense -= table;
  std::uint64_t largest_unit = static_cast<std::uint64_t>(sum(embedding_tensors(m))) - (partition ? table : 0);
  std::uint64_t largest_tensor = partition ? 0 : table;
  for (int layer = 0; layer < m.layers; ++layer) {
    const auto t = layer_dense_tensors(m, layer);
    largest_unit = std::max(largest_unit, static_cast<std::uint64_t>(sum(t)));
    for (auto x : t) largest_tensor = std::max(largest_tensor, static_cast<std::uint64_t>(x));
  }
  const std::uint64_t bucket = std::max(static_cast<std::uint64_t>(p.bucket_bytes), g * largest_tensor);
  switch (p.dense) {
    case DenseSharding::ddp:
      add(Tier::hbm, MemoryUse::parameters, a * dense, "dense parameters (replicated)");
      add(Tier::hbm, MemoryUse::gradients, g * dense, "dense gradients (replicated)");
      add(Tier::hbm, MemoryUse::optimizer, o * dense, "dense optimizer states (replicated)");
      break;
    case DenseSharding::zero2:
      add(Tier::hbm, MemoryUse::parameters, a * dense, "dense parameters (replicated)");
      add(Tier::hbm, MemoryUse::gradients, g * ceil_div(dense, world), "dense gradient partition");
      add(Tier::hbm, MemoryUse::optimizer, o * ceil_div(dense, world), "dense optimizer partition");
      add(Tier::hbm, MemoryUse::buffers, bucket, "gradient reduction bucket");
      break;
    case DenseSharding::zero3:
      add(Tier::hbm, MemoryUse::parameters, a * ceil_div(dense, shard), "dense parameter shard (node)");
      add(Tier::hbm, MemoryUse::gradients, g * ceil_div(dense, shard), "dense gradient shard (node)");
      add(Tier::hbm, MemoryUse::optimizer, o * ceil_div(dense, world), "dense optimizer partition");
      add(Tier::hbm, MemoryUse::buffers, 2 * a * largest_unit, "gathered parameters (current + prefetched layer)");
      add(Tier::hbm, MemoryUse::buffers, bucket, "gradient reduction bucket");
      break;
  }

  // ---- partitioned token table: column shards, streamed in chunks for the tied output projection ----
  std::int64_t max_tokens = 0;
  for (const auto& step : routing.steps)
    for (const auto& mb : step) max_tokens = std::max(max_tokens, mb.tokens[static_cast<std::size_t>(rank)]);
  if (partition) {
    add(Tier::hbm, MemoryUse::parameters, a * ceil_div(table, world), "token table column shard");
    add(Tier::hbm, MemoryUse::gradients, g * ceil_div(table, world), "token table gradient shard");
    add(Tier::hbm, MemoryUse::optimizer, o * ceil_div(table, world), "token table optimizer shard");
    const std::uint64_t chunks =
        p.bucket_bytes > 0 ? std::max<std::uint64_t>(1, ceil_div(a * table, static_cast<std::uint64_t>(p.bucket_bytes)))
                           : 1;
    const std::uint64_t chunk = ceil_div(table, chunks);
    add(Tier::hbm, MemoryUse::buffers, 2 * a * chunk + g * chunk, "token table chunks (two gathered, one gradient)");
    const std::uint64_t n = static_cast<std::uint64_t>(max_tokens);
    add(Tier::hbm, MemoryUse::buffers, 4 * n * world + 2 * a * n * static_cast<std::uint64_t>(m.hidden),
        "lookup ids and column slices");
  }

  // ---- experts of this rank ----
  const std::uint64_t pe = static_cast<std::uint64_t>(m.expert_params_per_expert());
  const std::uint64_t x = static_cast<std::uint64_t>(m.moe_layers()) * static_cast<std::uint64_t>(l.local_experts) * pe;
  const std::uint64_t edp = p.dense == DenseSharding::ddp ? 1 : static_cast<std::uint64_t>(l.edp);
  const std::uint64_t slots = 2 * static_cast<std::uint64_t>(l.local_experts) * pe;  // current + prefetched layer
  plan.expert_state_bytes = (a + g + o) * pe;
  switch (p.offload) {
    case Offload::none:
      add(Tier::hbm, MemoryUse::parameters, a * x, "expert parameters");
      add(Tier::hbm, MemoryUse::gradients, g * ceil_div(x, edp), "expert gradients");
      add(Tier::hbm, MemoryUse::optimizer, o * ceil_div(x, edp), "expert optimizer states");
      if (edp > 1)
        add(Tier::hbm, MemoryUse::buffers,
            std::max(static_cast<std::uint64_t>(p.bucket_bytes),
                     g * static_cast<std::uint64_t>(m.hidden) * m.ffn_hidden()),
            "expert gradient bucket");
      break;
    case Offload::cpu:
      add(Tier::hbm, MemoryUse::parameters, a * slots, "expert parameter slots (two layers)");
      add(Tier::hbm, MemoryUse::gradients, g * slots, "expert gradient slots (two layers)");
      add(Tier::dram, MemoryUse::parameters, a * x, "expert parameters (host)");
      add(Tier::dram, MemoryUse::gradients, g * x, "expert gradients (host)");
      // Offloaded expert gradients are all-reduced over the replicas, so every replica updates all its experts.
      add(Tier::dram, MemoryUse::optimizer, o * x, "expert optimizer states (host)");
      break;
    case Offload::nvme: {
      add(Tier::hbm, MemoryUse::parameters, a * slots, "expert parameter slots (two layers)");
      add(Tier::hbm, MemoryUse::gradients, g * slots, "expert gradient slots (two layers)");
      add(Tier::ssd, MemoryUse::parameters, a * x, "expert parameters (SSD)");
      add(Tier::ssd, MemoryUse::optimizer, o * x, "expert optimizer states (SSD)");
      const std::uint64_t staging = slots * (a + g + o);
      add(Tier::dram, MemoryUse::buffers, staging, "expert staging (two layers)");
      double cache = p.cache.capacity_gib * core::kGiB;
      if (cache <= 0) cache = plan.capacity_bytes[1] - static_cast<double>(staging);
      const std::int64_t all = std::int64_t{m.moe_layers()} * l.local_experts;
      std::int64_t entries =
          cache > 0 ? static_cast<std::int64_t>(cache / static_cast<double>(plan.expert_state_bytes)) : 0;
      if (p.cache.capacity_fraction > 0)
        entries = static_cast<std::int64_t>(p.cache.capacity_fraction * static_cast<double>(all));
      entries = std::min(entries, all);
      plan.cache_entries = entries;
      add(Tier::dram, MemoryUse::expert_cache, static_cast<std::uint64_t>(entries) * plan.expert_state_bytes,
          "LFU cache of expert states");
      break;
    }
  }

  // ---- all-to-all buffers sized for the largest micro-batch of the plan ----
  const std::uint64_t row = a * static_cast<std::uint64_t>(m.hidden);
  add(Tier::hbm, MemoryUse::buffers,
      row * static_cast<std::uint64_t>(routing.max_rows_sent(rank) + routing.max_rows_received(l, rank)),
      "all-to-all send and receive buffers");
  return items;
}

}  // namespace

MemoryPlan plan_memory(const TrainingConfig& c, const Layout& l, const RoutingPlan& routing) {
  MemoryPlan plan;
  const core::NodeSpec& node = c.cluster.node;
  plan.capacity_bytes = {node.gpu.hbm_bytes, node.host_memory.capacity_bytes / node.gpus,
                         node.ssd.capacity_bytes / node.gpus};
  for (int r = 0; r < l.world; ++r) {
    RankMemory rm;
    rm.persistent = persistent_items(c, l, routing, r, plan);
    for (const auto& step : routing.steps)
      for (const auto& mb : step) {
        std::uint64_t total = 0;
        for (auto b : activation_sequence(c.model, mb, l, r)) total += b;
        rm.peak_activation_bytes = std::max(rm.peak_activation_bytes, total);
      }
    for (const Allocation& a : rm.persistent)
      rm.at_peak[static_cast<std::size_t>(a.tier)][static_cast<std::size_t>(a.use)] += a.bytes;
    rm.at_peak[0][static_cast<std::size_t>(MemoryUse::activations)] += rm.peak_activation_bytes;
    plan.ranks.push_back(std::move(rm));
  }
  return plan;
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
