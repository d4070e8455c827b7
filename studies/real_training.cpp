#include "studies/real_training.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>

#include "core/error.hpp"
#include "studies/worker_launch.hpp"

namespace moesys::studies {

namespace tr = policies::training;
using nlohmann::json;

json small_cpu_model(int ranks) {
  return {{"preset", "gpt-moe"}, {"experts", 2 * ranks}, {"hidden", 256},
          {"heads", 4},          {"layers", 2},          {"vocab", 512},
          {"seq_len", 64},       {"micro_batch", 4},     {"global_batch", 4 * ranks},
          {"dtype", "fp32"}};
}

json reduced_zoo_model(const json& zoo, int ranks) {
  json m = zoo;
  const int hidden = 256, heads = 4;
  const double scale = static_cast<double>(hidden) / zoo.at("hidden").get<double>();
  auto width = [scale](double w) { return std::max(16, static_cast<int>(std::lround(w * scale / 16.0)) * 16); };
  const bool first_dense = zoo.value("first_dense_layers", 0) > 0;
  m["name"] = zoo.at("name").get<std::string>() + "-reduced";
  m["layers"] = first_dense ? 3 : 2;
  if (first_dense) m["first_dense_layers"] = 1;
  m["hidden"] = hidden;
  m["heads"] = heads;
  if (zoo.contains("attention") && zoo["attention"].value("kind", "mha") == "mla") {
    // Latent ranks scaled with the width, heads of 64 (48 + 16 rotary) over 64-wide values.
    json& a = m["attention"];
    if (a.value("q_lora_rank", 0) > 0) a["q_lora_rank"] = width(a["q_lora_rank"].get<double>());
    a["kv_lora_rank"] = width(a["kv_lora_rank"].get<double>());
    a["qk_nope_head_dim"] = 48;
    a["qk_rope_head_dim"] = 16;
    a["v_head_dim"] = hidden / heads;
  } else if (zoo.contains("attention")) {
    json& a = m["attention"];
    if (a.contains("kv_heads"))  // keep the query heads per K/V head where 4 heads allow it
      a["kv_heads"] = std::max(1, heads * a["kv_heads"].get<int>() / zoo.at("heads").get<int>());
    if (a.contains("head_dim")) a["head_dim"] = hidden / heads;
  }
  if (zoo.contains("ffn_hidden")) m["ffn_hidden"] = width(zoo["ffn_hidden"].get<double>());
  if (zoo.contains("expert_hidden")) m["expert_hidden"] = width(zoo["expert_hidden"].get<double>());
  m["experts"] = 2 * ranks;
  m["top_k"] = std::min(zoo.at("top_k").get<int>(), 2 * ranks);
  if (zoo.contains("shared_experts")) m["shared_experts"] = std::min(1, zoo["shared_experts"].get<int>());
  m.erase("fp8_gemm");  // FP8 is a simulator option: the real runtimes compute in fp32
  m.erase("fp8_dispatch");
  m.erase("expert_groups");
  m.erase("max_groups_per_token");
  m["vocab"] = 512;
  m["seq_len"] = 64;
  m["micro_batch"] = 4;
  m["global_batch"] = 4 * ranks;
  m["dtype"] = "fp32";
  return m;
}

namespace {
RealTrainingRun run_worker(const json& config, int ranks, const std::string& mode, const std::string& worker,
                           const std::string& runtime) {
  const std::string config_path = worker_temp_path("moesys-train-config"), out_path = worker_temp_path("moesys-train");
  struct Cleanup {  // the worker's files go, whatever happens
    std::vector<std::string> paths;
    ~Cleanup() {
      for (const auto& p : paths) std::remove(p.c_str());
    }
  } cleanup{{config_path, out_path}};
  {
    std::ofstream out(config_path);
    if (!(out << config.dump() << "\n")) throw core::RuntimeFailure("cannot write " + config_path);
  }
  const auto start = std::chrono::steady_clock::now();
  run_exec_worker(ranks, {mode, config_path, out_path}, worker);
  RealTrainingRun r;
  r.run.runtime = runtime;
  r.run.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::ifstream in(out_path);
  json doc = json::parse(in);
  for (std::size_t i = 0; i < doc.at("ranks").size(); ++i) {
    const json& d = doc["ranks"][i];
    tr::SimulatedRank rank;
    rank.memory = core::MemoryLedger(1e30, 1e30, 1e30);
    for (int t = 0; t < core::kTierCount; ++t)
      rank.memory.allocate(static_cast<core::Tier>(t), d.at("peak_bytes").at(static_cast<std::size_t>(t)), "peak");
    for (const json& sp : d.at("spans"))
      rank.spans.push_back({static_cast<int>(i), sp[0].get<std::string>(),
                            static_cast<core::SpanKind>(sp[1].get<int>()), sp[2].get<std::string>(),
                            sp[3].get<double>(), sp[4].get<double>(), sp[5].get<std::uint64_t>(), sp[6].get<double>()});
    r.run.ranks.push_back(std::move(rank));
    tr::RankCounters k;
    const json& c = d.at("counters");  // the order rank_result (exec/tools/train_worker.cpp) writes
    k.expert_fetches = c.at(0), k.wasted_fetches = c.at(1), k.on_demand_fetches = c.at(2), k.cache_hits = c.at(3);
    k.cache_misses = c.at(4), k.cache_evictions = c.at(5), k.ssd_read_bytes = c.at(6), k.ssd_write_bytes = c.at(7);
    k.losses = d.at("losses").get<std::vector<double>>();
    k.routing = d.at("routing").get<std::vector<std::vector<std::vector<std::int64_t>>>>();
    k.expert_rows = d.at("expert_rows").get<std::vector<std::int64_t>>();
    r.counters.push_back(std::move(k));
  }
  doc.erase("ranks");
  r.machine = std::move(doc);
  return r;
}
}  // namespace

RealTrainingRun run_training_on_cpu(const json& config, int ranks, bool probe) {
  return run_worker(config, ranks, probe ? "validate-train" : "train", "moesys-exec-worker", "cpu");
}

RealTrainingRun run_training_on_gpus(const json& config, int ranks) {
  return run_worker(config, ranks, "train", "moesys-cuda-worker", "cuda");
}

core::RoutingTrace routing_trace(const std::vector<tr::RankCounters>& ranks, int experts, int moe_layers) {
  core::RoutingTrace t;
  t.ranks = static_cast<int>(ranks.size()), t.experts = experts, t.layers = moe_layers;
  const std::size_t steps = ranks.empty() ? 0 : ranks.front().routing.size();
  for (std::size_t s = 0; s < steps; ++s) {
    std::vector<core::RoutingMatrix> layers;
    for (int l = 0; l < moe_layers; ++l) {
      core::RoutingMatrix m(t.ranks, experts);
      for (int r = 0; r < t.ranks; ++r)
        for (int e = 0; e < experts; ++e)
          m.at(r, e) = ranks[static_cast<std::size_t>(r)]
                           .routing.at(s)
                           .at(static_cast<std::size_t>(l))
                           .at(static_cast<std::size_t>(e));
      layers.push_back(std::move(m));
    }
    t.steps.push_back(std::move(layers));
  }
  return t;
}

}  // namespace moesys::studies
