#include "policies/training/training_run.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>

#include "core/units.hpp"
#include "policies/training/step_metrics.hpp"

namespace moesys::policies::training {

using nlohmann::json;

namespace {

double gib(double bytes) {
  return bytes / core::kGiB;
}

json memory_json(const TrainingPlan& plan, const SimulatedRun& run) {
  // Simulated peaks (the ledgers) per tier, largest over ranks; and the plan's breakdown of the rank with the
  // largest HBM peak (the two agree: the rank programs allocate exactly the plan).
  std::array<double, core::kTierCount> peak{};
  for (const auto& r : run.ranks)
    for (int t = 0; t < core::kTierCount; ++t)
      peak[static_cast<std::size_t>(t)] = std::max(
          peak[static_cast<std::size_t>(t)], static_cast<double>(r.memory.peak_bytes(static_cast<core::Tier>(t))));
  std::size_t worst = 0;
  for (std::size_t r = 0; r < plan.memory.ranks.size(); ++r)
    if (plan.memory.ranks[r].peak(core::Tier::hbm) > plan.memory.ranks[worst].peak(core::Tier::hbm)) worst = r;
  json by_use = json::object();
  static const char* kTiers[] = {"hbm", "dram", "ssd"};
  for (int t = 0; t < core::kTierCount; ++t) {
    json uses = json::object();
    for (int u = 0; u < kMemoryUseCount; ++u) {
      const double b = static_cast<double>(
          plan.memory.ranks[worst].at_peak[static_cast<std::size_t>(t)][static_cast<std::size_t>(u)]);
      if (b > 0) uses[to_string(static_cast<MemoryUse>(u))] = gib(b);
    }
    by_use[kTiers[t]] = uses;
  }
  return {
      {"peak_hbm_gib", gib(peak[0])},
      {"peak_dram_gib", gib(peak[1])},
      {"peak_ssd_gib", gib(peak[2])},
      {"capacity_gib",
       {gib(plan.memory.capacity_bytes[0]), gib(plan.memory.capacity_bytes[1]), gib(plan.memory.capacity_bytes[2])}},
      {"planned_rank", worst},
      {"planned_by_use_gib", by_use},
      {"cache_entries", plan.memory.cache_entries}};
}

}  // namespace

TrainingReport run_training(const TrainingConfig& c, const Simulator& simulate, bool keep_last_step_spans) {
  const TrainingPlan plan = make_training_plan(c);  // every input error surfaces here, before any simulation
  std::vector<RankCounters> counters(static_cast<std::size_t>(plan.layout.ranks));
  const auto wall_start = std::chrono::steady_clock::now();
  SimulatedRun run = simulate(c.cluster, plan.layout.ranks, training_program(plan, counters));
  run.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  return summarize_training(plan, run, counters, keep_last_step_spans);
}

/// Per-rank load imbalance of the expert rows the program computed: for each MoE layer run of a micro-batch of the
/// last step (the step whose time is reported), the most rows a rank of the pipeline stage computed over the
/// stage's mean; the mean of that.
double measured_rank_imbalance(const Layout& l, const std::vector<RankCounters>& counters, int steps) {
  double sum = 0;
  std::int64_t n = 0;
  for (int stage = 0; stage < l.pp; ++stage) {
    std::size_t runs = SIZE_MAX;
    for (int r = stage * l.world; r < (stage + 1) * l.world && r < static_cast<int>(counters.size()); ++r)
      runs = std::min(runs, counters[static_cast<std::size_t>(r)].expert_rows.size());
    if (runs == SIZE_MAX) continue;
    for (std::size_t i = runs - runs / static_cast<std::size_t>(steps); i < runs; ++i) {
      std::vector<std::int64_t> rows;
      for (int r = stage * l.world; r < (stage + 1) * l.world; ++r)
        rows.push_back(counters[static_cast<std::size_t>(r)].expert_rows[i]);
      sum += rank_imbalance(rows);
      ++n;
    }
  }
  return n > 0 ? sum / static_cast<double>(n) : 1.0;
}

TrainingReport summarize_training(const TrainingPlan& plan, const SimulatedRun& run,
                                  const std::vector<RankCounters>& counters, bool keep_last_step_spans) {
  const TrainingConfig& c = plan.config;
  const double wall_s = run.wall_s;

  std::vector<const std::vector<core::Span>*> spans;
  for (const auto& r : run.ranks) spans.push_back(&r.spans);
  json steps = json::array();
  for (int s = 0; s < c.steps; ++s) steps.push_back(step_window(spans, s).seconds());
  const StepWindow last = step_window(spans, c.steps - 1);
  const StepBreakdown b = step_breakdown(spans, last);

  const RoutingPlan& rp = plan.routing;
  const double tokens_per_s = static_cast<double>(rp.tokens_per_step) / b.step_s;
  TrainingConfig declared = c;
  declared.model = plan.model;  // with its MTP modules as modules, not as the program's last layers
  json s = describe_config(declared);
  s["micro_batches"] = rp.micro_batches;
  s["tokens_per_step"] = rp.tokens_per_step;
  s["sequences_per_step"] = rp.sequences_per_step;
  if (c.multitask()) {
    s["placement"] = rp.placement.describe();
    s["task_loads"] = rp.task_loads;
  }
  s["step_s"] = b.step_s;
  s["step_times_s"] = steps;
  s["tokens_per_s"] = tokens_per_s;
  s["samples_per_s"] = static_cast<double>(rp.sequences_per_step) / b.step_s;
  s["model_tflops_per_gpu"] = c.model.training_flops_per_token() * tokens_per_s / c.gpus / 1e12;
  s["breakdown_s"] = {{"compute", b.compute_s},
                      {"exposed_comm", b.exposed_comm_s},
                      {"exposed_copy", b.exposed_copy_s},
                      {"idle", b.idle_s}};
  s["memory"] = memory_json(plan, run);
  // Network bytes are counted by the simulator over the whole run; all steps move the same kinds of data, so the
  // mean per step is what one step moves (routing may differ a little from step to step).
  const double per = 1.0 / c.steps / core::kGB;
  s["network_gb_per_step"] = {{"intra_node", run.bytes_by_path_class[0] * per},
                              {"same_leaf", run.bytes_by_path_class[1] * per},
                              {"cross_spine", run.bytes_by_path_class[2] * per}};
  json copies = json::object();
  for (const auto& [name, bytes] : b.copy_bytes) {
    // The host optimizer is charged as host-memory copies scaled by the GPUs sharing the socket; report the
    // traffic it really makes.
    if (name == "copy dram->dram")
      copies["host optimizer traffic"] = bytes / c.cluster.node.gpus / core::kGB;
    else
      copies[name] = bytes / core::kGB;
  }
  s["copy_gb_last_step"] = copies;
  s["gate"] = {{"assignments", rp.assignments},
               {"dropped_fraction", rp.assignments ? static_cast<double>(rp.dropped) / rp.assignments : 0.0},
               {"padding_fraction", rp.assignments ? static_cast<double>(rp.padding_rows) / rp.assignments : 0.0},
               {"rank_imbalance", measured_rank_imbalance(plan.layout, counters, c.steps)}};
  if (c.policy.offload != Offload::none) {
    RankCounters t;
    for (const auto& k : counters) {
      t.expert_fetches += k.expert_fetches;
      t.wasted_fetches += k.wasted_fetches;
      t.on_demand_fetches += k.on_demand_fetches;
      t.cache_hits += k.cache_hits;
      t.cache_misses += k.cache_misses;
      t.cache_evictions += k.cache_evictions;
      t.ssd_read_bytes += k.ssd_read_bytes;
      t.ssd_write_bytes += k.ssd_write_bytes;
    }
    s["offload"] = {{"expert_fetches", t.expert_fetches},
                    {"wasted_fetches", t.wasted_fetches},
                    {"on_demand_fetches", t.on_demand_fetches},
                    {"cache_hits", t.cache_hits},
                    {"cache_misses", t.cache_misses},
                    {"cache_evictions", t.cache_evictions},
                    {"ssd_read_gb", t.ssd_read_bytes / core::kGB},
                    {"ssd_write_gb", t.ssd_write_bytes / core::kGB}};
  }
  s["runtime"] = run.runtime;
  if (run.runtime == "sim") {
    s["simulator"] = {{"wall_s", wall_s}, {"flows", run.flows}, {"solo_flows", run.solo_flows}, {"met_flows", run.met_flows}};
  } else {
    s["wall_s"] = wall_s;
    // Mean over the ranks that compute the loss (the last pipeline stage) of each step's last micro-batch loss.
    json losses = json::array();
    std::size_t steps = 0;
    for (const auto& k : counters) steps = std::max(steps, k.losses.size());
    for (std::size_t i = 0; i < steps; ++i) {
      double sum = 0;
      int ranks = 0;
      for (const auto& k : counters)
        if (i < k.losses.size()) sum += k.losses[i], ++ranks;
      losses.push_back(sum / ranks);
    }
    s["loss_per_step"] = losses;
  }

  TrainingReport report;
  report.summary = std::move(s);
  if (keep_last_step_spans)
    for (const auto& r : run.ranks)
      for (const core::Span& sp : r.spans)
        if (sp.end_s > last.start_s && sp.start_s < last.end_s) report.last_step.push_back(sp);
  return report;
}

}  // namespace moesys::policies::training
