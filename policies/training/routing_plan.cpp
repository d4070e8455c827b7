#include "policies/training/routing_plan.hpp"

#include <algorithm>
#include <stdexcept>

#include "core/error.hpp"
#include "core/workload.hpp"

namespace moesys::policies::training {

namespace {

using core::RoutingMatrix;

/// Share i of `total` split into `parts` (the remainder goes to the first shares).
std::int64_t share(std::int64_t total, std::int64_t parts, std::int64_t i) {
  return total / parts + (i < total % parts ? 1 : 0);
}

struct GateStats {
  std::int64_t assignments = 0, dropped = 0, padding = 0;
};

/// Applies the gate's capacity, the dispatch layout and the step's expert replicas to one layer's routing.
LayerRouting apply_gate(const RoutingMatrix& m, const std::vector<std::int64_t>& tokens, const TrainingConfig& c,
                        const Layout& l, const ReplicaMap& replicas, GateStats& stats) {
  LayerRouting lr;
  lr.send_rows.assign(static_cast<std::size_t>(l.world), std::vector<std::int64_t>(static_cast<std::size_t>(l.ep), 0));
  lr.expert_rows.assign(static_cast<std::size_t>(l.world),
                        std::vector<std::int64_t>(static_cast<std::size_t>(l.expert_slots()), 0));
  const bool gshard = c.policy.gate == Gate::gshard, padded = c.policy.dispatch == Dispatch::padded;
  const auto holders = replicas.all_holders();
  const int group = l.expert_group();
  for (int base = 0; base < l.world; base += group) {
    // Dropless padded dispatch pads every expert to the largest load in the group (DeepSpeed drop_tokens=false).
    std::int64_t group_max = 0;
    for (int r = base; r < base + group; ++r)
      for (int e = 0; e < l.experts; ++e) group_max = std::max(group_max, m.at(r, e));
    for (int r = base; r < base + group; ++r) {
      const std::int64_t cap = gshard ? c.model.expert_capacity(tokens[static_cast<std::size_t>(r)]) : group_max;
      for (int e = 0; e < l.experts; ++e) {
        const std::int64_t count = m.at(r, e);
        const std::int64_t kept = gshard ? std::min(count, cap) : count;
        const std::int64_t rows = padded ? cap : kept;
        stats.assignments += count;
        stats.dropped += count - kept;
        stats.padding += rows - kept;
        const auto& h = holders[static_cast<std::size_t>(e)];
        const auto split = split_over(h, r - base, rows);
        for (std::size_t k = 0; k < h.size(); ++k) {
          lr.send_rows[static_cast<std::size_t>(r)][static_cast<std::size_t>(h[k].first)] += split[k];
          for (int s = 0; s < l.etp; ++s)  // every shard of the expert computes (part of) every row
            lr.expert_rows[static_cast<std::size_t>(base + h[k].first * l.etp + s)]
                          [static_cast<std::size_t>(h[k].second)] += split[k];
        }
      }
    }
  }
  return lr;
}

/// The tokens routed to each expert of every MoE layer by a step's micro-batches (before capacity): the load the
/// replica policies read (a real run sums the gate's counts over the stage's ranks).
std::vector<std::vector<double>> step_load(const std::vector<std::vector<RoutingMatrix>>& raw) {
  std::vector<std::vector<double>> load;
  for (const auto& micro : raw)
    for (std::size_t layer = 0; layer < micro.size(); ++layer) {
      if (load.size() <= layer) load.emplace_back(static_cast<std::size_t>(micro[layer].experts()), 0.0);
      for (int e = 0; e < micro[layer].experts(); ++e)
        load[layer][static_cast<std::size_t>(e)] += static_cast<double>(micro[layer].expert_load(e));
    }
  return load;
}

/// Gates one step's routing ([micro][layer] matrices, tokens per rank of each micro-batch) with the replicas the
/// planner chose for it, appends the step to the plan and lets the planner see its load.
void add_step(int s, const std::vector<std::vector<RoutingMatrix>>& raw,
              const std::vector<std::vector<std::int64_t>>& tokens, const TrainingConfig& c, const Layout& l,
              ReplicaPlanner& planner, RoutingPlan& plan, GateStats& stats) {
  auto& step = plan.steps.emplace_back();
  plan.replicas.push_back(planner.maps());
  for (std::size_t m = 0; m < raw.size(); ++m) {
    MicroBatch mb;
    mb.tokens = tokens[m];
    for (std::size_t layer = 0; layer < raw[m].size(); ++layer)
      mb.layers.push_back(apply_gate(raw[m][layer], mb.tokens, c, l, planner.maps()[layer], stats));
    step.push_back(std::move(mb));
  }
  planner.observe(s, step_load(raw));
}

std::vector<double> measure_task_loads(const TrainingConfig& c) {
  // The gate's token counts of one step with one worker per task: what the elastic policy reads at run time.
  core::RoutingShape shape{static_cast<int>(c.tasks.size()), c.model.experts, std::max(1, c.model.moe_layers()), 0,
                           c.model.top_k};
  std::vector<core::TaskSpec> specs;
  std::vector<int> placement;
  for (std::size_t t = 0; t < c.tasks.size(); ++t) {
    specs.push_back({c.tasks[t].name, c.tasks[t].sequences * c.model.seq_len, c.tasks[t].affinity});
    placement.push_back(static_cast<int>(t));
  }
  core::MultitaskRouting routing(shape, specs, placement, c.workload_seed);
  RoutingMatrix m = routing.route(0, 0);
  std::vector<double> loads;
  for (int t = 0; t < m.ranks(); ++t) loads.push_back(static_cast<double>(m.rank_total(t)) / c.model.top_k);
  return loads;
}

// Gradient accumulation beyond this many micro-batches per step is refused: published runs use at most a few
// hundred, and every micro-batch is a whole pass of the program (thousands would run for hours).
constexpr std::int64_t kMaxMicroBatches = 1024;

void check_micro_batches(std::int64_t micro_batches, std::int64_t sequences, int micro_batch) {
  if (micro_batches > kMaxMicroBatches)
    throw core::InfeasibleError(std::to_string(micro_batches) + " micro-batches per step (" +
                                std::to_string(sequences) + " sequences per rank in micro-batches of " +
                                std::to_string(micro_batch) + ") exceed the cap of " +
                                std::to_string(kMaxMicroBatches) + ": raise micro_batch or use more GPUs");
}

void plan_single_task(const TrainingConfig& c, const Layout& l, RoutingPlan& plan, GateStats& stats) {
  const core::ModelConfig& md = c.model;
  // Sequences are dealt to the data-parallel replicas; a tensor-parallel group shares its replica's micro-batches,
  // each rank holding one sequence shard (layout.hpp), so every rank of the stage routes as many tokens.
  const int dp = l.batch_replicas();
  const bool groups = l.tp * l.cp > 1;
  const std::string replicas = groups ? " data-parallel replicas" : " ranks";
  if (md.global_batch % dp != 0)
    throw core::InfeasibleError("global batch of " + std::to_string(md.global_batch) +
                                " sequences does not divide evenly over " + std::to_string(dp) + replicas);
  const int per_rank = md.global_batch / dp;
  if (per_rank % md.micro_batch != 0)
    throw core::InfeasibleError(std::to_string(per_rank) + " sequences per" + (groups ? " replica" : " rank") +
                                " (global batch " + std::to_string(md.global_batch) + " over " + std::to_string(dp) +
                                replicas + ") do not divide into micro-batches of " + std::to_string(md.micro_batch));
  check_micro_batches(per_rank / md.micro_batch, per_rank, md.micro_batch);
  plan.micro_batches = per_rank / md.micro_batch;
  const std::int64_t tokens = md.tokens_per_micro_batch() / (l.tp * l.cp);
  auto model =
      core::make_routing_model(c.workload, c.file, "workload", l.world, md.experts, md.moe_layers(), tokens, md.top_k);
  ReplicaPlanner planner(c.policy.replicas, md.moe_layers(), md.experts, l.ep, l.local_experts,
                         l.ep_members_per_node());
  for (int s = 0; s < c.steps; ++s) {
    std::vector<std::vector<RoutingMatrix>> raw(static_cast<std::size_t>(plan.micro_batches));
    for (int m = 0; m < plan.micro_batches; ++m)
      for (int layer = 0; layer < md.moe_layers(); ++layer)
        raw[static_cast<std::size_t>(m)].push_back(model->route(s * plan.micro_batches + m, layer));
    add_step(s, raw,
             std::vector<std::vector<std::int64_t>>(static_cast<std::size_t>(plan.micro_batches),
                                                    std::vector<std::int64_t>(static_cast<std::size_t>(l.world), tokens)),
             c, l, planner, plan, stats);
  }
}

void plan_multitask(const TrainingConfig& c, const Layout& l, RoutingPlan& plan, GateStats& stats) {
  const core::ModelConfig& md = c.model;
  const auto task_count = static_cast<int>(c.tasks.size());
  plan.task_loads = measure_task_loads(c);
  if (c.policy.placement == Placement::elastic) {
    plan.placement = elastic_placement(plan.task_loads, l.world);
  } else {
    if (l.world < task_count)
      throw core::InfeasibleError("static placement needs a rank per task: " + std::to_string(task_count) +
                                  " tasks on " + std::to_string(l.world) + " ranks");
    plan.placement = static_placement(l.world, task_count);
  }
  // Sequences per rank: each task's sequences shared evenly by its slots.
  std::vector<std::int64_t> rank_seqs(static_cast<std::size_t>(l.world), 0);
  std::vector<int> seen(static_cast<std::size_t>(task_count), 0);
  for (const Slot& s : plan.placement.slots) {
    const auto t = static_cast<std::size_t>(s.task);
    rank_seqs[static_cast<std::size_t>(s.rank)] +=
        share(c.tasks[t].sequences, plan.placement.ranks_of_task[t], seen[t]++);
  }
  std::int64_t most = *std::max_element(rank_seqs.begin(), rank_seqs.end());
  check_micro_batches((most + md.micro_batch - 1) / md.micro_batch, most, md.micro_batch);
  plan.micro_batches = static_cast<int>((most + md.micro_batch - 1) / md.micro_batch);
  core::RoutingShape shape{static_cast<int>(plan.placement.slots.size()), md.experts, md.moe_layers(), 0, md.top_k};
  std::vector<int> slot_task;
  for (const Slot& s : plan.placement.slots) slot_task.push_back(s.task);
  ReplicaPlanner planner(c.policy.replicas, md.moe_layers(), md.experts, l.ep, l.local_experts,
                         l.ep_members_per_node());
  for (int s = 0; s < c.steps; ++s) {
    std::vector<std::vector<RoutingMatrix>> raw(static_cast<std::size_t>(plan.micro_batches));
    std::vector<std::vector<std::int64_t>> tokens(static_cast<std::size_t>(plan.micro_batches),
                                                  std::vector<std::int64_t>(static_cast<std::size_t>(l.world), 0));
    for (int m = 0; m < plan.micro_batches; ++m) {
      std::vector<core::TaskSpec> specs;
      for (const auto& t : c.tasks) {
        const std::int64_t tok = share(t.sequences * md.seq_len, plan.micro_batches, m);
        if (tok <= 0)
          throw core::InfeasibleError("task \"" + t.name + "\" has fewer tokens than the " +
                                      std::to_string(plan.micro_batches) + " micro-batches of a step");
        specs.push_back({t.name, tok, t.affinity});
      }
      core::MultitaskRouting routing(shape, specs, slot_task, c.workload_seed);
      for (std::size_t i = 0; i < plan.placement.slots.size(); ++i)
        tokens[static_cast<std::size_t>(m)][static_cast<std::size_t>(plan.placement.slots[i].rank)] +=
            routing.tokens_of_rank(static_cast<int>(i));
      for (int layer = 0; layer < md.moe_layers(); ++layer) {
        RoutingMatrix by_slot = routing.route(s * plan.micro_batches + m, layer);
        RoutingMatrix by_rank(l.world, md.experts);
        for (std::size_t i = 0; i < plan.placement.slots.size(); ++i)
          for (int e = 0; e < md.experts; ++e)
            by_rank.at(plan.placement.slots[i].rank, e) += by_slot.at(static_cast<int>(i), e);
        raw[static_cast<std::size_t>(m)].push_back(std::move(by_rank));
      }
    }
    add_step(s, raw, tokens, c, l, planner, plan, stats);
  }
}

}  // namespace

std::vector<std::int64_t> LayerRouting::recv_rows(const Layout& l, int rank) const {
  std::vector<std::int64_t> out;
  const int base = l.ep_base(rank), me = l.ep_index(rank);
  for (int j = 0; j < l.expert_group(); ++j)
    out.push_back(send_rows[static_cast<std::size_t>(base + j)][static_cast<std::size_t>(me)]);
  return out;
}

std::int64_t LayerRouting::rows_sent(int rank) const {
  std::int64_t s = 0;
  for (auto v : send_rows[static_cast<std::size_t>(rank)]) s += v;
  return s;
}

std::int64_t LayerRouting::rows_computed(int rank) const {
  std::int64_t s = 0;
  for (auto v : expert_rows[static_cast<std::size_t>(rank)]) s += v;
  return s;
}

std::int64_t RoutingPlan::max_rows_sent(int rank) const {
  std::int64_t m = 0;
  for (const auto& step : steps)
    for (const auto& mb : step)
      for (const auto& lr : mb.layers) m = std::max(m, lr.rows_sent(rank));
  return m;
}

std::int64_t RoutingPlan::max_rows_received(const Layout&, int rank) const {
  std::int64_t m = 0;
  for (const auto& step : steps)
    for (const auto& mb : step)
      for (const auto& lr : mb.layers) m = std::max(m, lr.rows_computed(rank));
  return m;
}

RoutingPlan build_routing_plan(const TrainingConfig& c, const Layout& l) {
  RoutingPlan plan;
  GateStats stats;
  try {
    if (c.multitask())
      plan_multitask(c, l, plan, stats);
    else
      plan_single_task(c, l, plan, stats);
  } catch (const std::invalid_argument& e) {
    throw core::InfeasibleError(std::string("workload: ") + e.what());
  }
  plan.assignments = stats.assignments;
  plan.dropped = stats.dropped;
  plan.padding_rows = stats.padding;
  double imbalance = 0;
  std::int64_t layers = 0;
  for (const auto& step : plan.steps)
    for (const auto& mb : step)
      for (const auto& lr : mb.layers) {
        std::vector<std::int64_t> rows;
        for (int r = 0; r < l.world; ++r) rows.push_back(lr.rows_computed(r));
        imbalance += rank_imbalance(rows);
        ++layers;
      }
  plan.rank_imbalance = layers > 0 ? imbalance / static_cast<double>(layers) : 1.0;
  for (const auto& mb : plan.steps.front())
    for (auto t : mb.tokens) plan.tokens_per_step += t;
  plan.sequences_per_step = c.model.global_batch;
  return plan;
}

RoutingPlan build_generation_routing(const TrainingConfig& c, const Layout& l, const std::vector<std::int64_t>& tokens,
                                     const std::vector<std::vector<RoutingMatrix>>& passes) {
  RoutingPlan plan;
  GateStats stats;
  plan.micro_batches = 1;
  ReplicaPlanner planner(c.policy.replicas, c.model.moe_layers(), c.model.experts, l.ep, l.local_experts,
                         l.ep_members_per_node());
  for (std::size_t pass = 0; pass < passes.size(); ++pass)
    add_step(static_cast<int>(pass), {passes[pass]},
             {std::vector<std::int64_t>(static_cast<std::size_t>(l.world), tokens[pass])}, c, l, planner, plan, stats);
  plan.assignments = stats.assignments;
  return plan;
}

}  // namespace moesys::policies::training
