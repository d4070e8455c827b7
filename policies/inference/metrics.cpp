#include "policies/inference/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/units.hpp"

namespace moesys::policies::inference {

namespace {
// Nearest-rank percentile of a non-empty sample.
double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
  return v[std::max<std::size_t>(rank, 1) - 1];
}
}  // namespace

InferenceMetrics summarize(const PreparedRun& run, const std::vector<RankRecord>& records,
                           const RuntimeOutcome& outcome, double link_bytes_per_s) {
  const InferenceConfig& c = run.config;
  InferenceMetrics m;
  // A pass is over when every rank has sampled its tokens.
  std::vector<double> end(static_cast<std::size_t>(c.forward_passes()), 0.0);
  for (const RankRecord& r : records)
    for (std::size_t p = 0; p < end.size(); ++p) end[p] = std::max(end[p], r.pass_end_s.at(p));
  m.elapsed_s = end.back();
  m.ttft_s = end.front();
  const double tokens_per_pass = static_cast<double>(c.gpus) * c.batch;
  m.tokens_per_s = tokens_per_pass * c.output_tokens / m.elapsed_s;
  std::vector<double> steps;
  for (std::size_t p = 1; p < end.size(); ++p) steps.push_back(end[p] - end[p - 1]);
  const double decode_s = m.elapsed_s - m.ttft_s;
  if (!steps.empty()) {
    m.tpot_p50_s = percentile(steps, 0.50);
    m.tpot_p99_s = percentile(steps, 0.99);
    m.decode_tokens_per_s = tokens_per_pass * static_cast<double>(steps.size()) / decode_s;
  }

  for (auto b : outcome.peak_hbm_bytes) m.peak_hbm_bytes = std::max(m.peak_hbm_bytes, b);
  m.peak_hbm_by_tag = outcome.peak_hbm_by_tag;
  m.link_bytes_per_s = link_bytes_per_s;
  double h2d = 0;
  for (const RankRecord& r : records) h2d += static_cast<double>(r.h2d_bytes);
  m.h2d_bytes_per_rank = h2d / static_cast<double>(records.size());
  // Steady state: the most any decode pass moved (the prefill's also loads what the run starts with; the ring's
  // last pass has nothing left to prefetch).
  for (const RankRecord& r : records)
    for (std::size_t p = r.pass_h2d_bytes.size() > 1 ? 1 : 0; p < r.pass_h2d_bytes.size(); ++p)
      m.h2d_bytes_per_pass = std::max(m.h2d_bytes_per_pass, static_cast<std::uint64_t>(r.pass_h2d_bytes[p]));
  m.pcie_utilization = m.h2d_bytes_per_rank / (m.elapsed_s * link_bytes_per_s);
  if (m.h2d_bytes_per_pass > 0) {
    const double bound_step_s = static_cast<double>(m.h2d_bytes_per_pass) / link_bytes_per_s;
    m.pcie_bound_tokens_per_s = tokens_per_pass / bound_step_s;
    if (!steps.empty()) m.pcie_bound_fraction = m.decode_tokens_per_s / *m.pcie_bound_tokens_per_s;
  }
  return m;
}

nlohmann::json run_to_json(const PreparedRun& run, const InferenceMetrics& m) {
  const InferenceConfig& c = run.config;
  auto gib = [](double bytes) { return bytes / core::kGiB; };
  auto opt = [](const std::optional<double>& v, double scale) -> nlohmann::json {
    return v ? nlohmann::json(*v * scale) : nlohmann::json(nullptr);
  };
  nlohmann::json tags = nlohmann::json::object();
  for (const auto& [tag, bytes] : m.peak_hbm_by_tag) tags[tag] = gib(static_cast<double>(bytes));
  return {
      {"preset", c.preset},
      {"policy", c.policy},
      {"host_memory", c.policy == "all-in-gpu" ? "none" : to_string(c.host_memory)},  // where offloaded weights live
      {"model", c.model.name},
      {"params_b", static_cast<double>(c.model.total_params()) / 1e9},
      {"experts", c.model.experts},
      {"gpus", c.gpus},
      {"ring_slots", c.policy == "moesys" ? c.ring_slots : 0},
      {"batch", c.batch},
      {"prompt_tokens", c.prompt_tokens},
      {"output_tokens", c.output_tokens},
      {"all_to_all", c.gpus > 1 ? all_to_all_name(c.all_to_all) : "none"},
      {"workload", c.workload.value("kind", "")},
      {"tokens_per_s", m.tokens_per_s},
      {"decode_tokens_per_s", m.decode_tokens_per_s},
      {"ttft_s", m.ttft_s},
      {"tpot_p50_ms", opt(m.tpot_p50_s, 1e3)},
      {"tpot_p99_ms", opt(m.tpot_p99_s, 1e3)},
      {"elapsed_s", m.elapsed_s},
      {"peak_hbm_gib", gib(static_cast<double>(m.peak_hbm_bytes))},
      {"hbm_capacity_gib", gib(run.plan.hbm_capacity_bytes)},
      {"peak_hbm_by_tag_gib", tags},
      {"kv_cache_gib", gib(static_cast<double>(run.plan.kv_cache_bytes))},
      {"host_weights_gib", gib(static_cast<double>(run.plan.weights.host_weights))},
      {"pcie_gbytes_per_s", m.link_bytes_per_s / core::kGB},
      {"h2d_gib_per_pass", gib(static_cast<double>(m.h2d_bytes_per_pass))},
      {"h2d_gib_per_gpu", gib(m.h2d_bytes_per_rank)},
      {"pcie_utilization", m.pcie_utilization},
      {"pcie_bound_tokens_per_s", opt(m.pcie_bound_tokens_per_s, 1)},
      {"pcie_bound_fraction", opt(m.pcie_bound_fraction, 1)},
  };
}

namespace {
const std::vector<std::string> kColumns = {"preset",
                                           "policy",
                                           "host_memory",
                                           "model",
                                           "gpus",
                                           "ring_slots",
                                           "batch",
                                           "prompt_tokens",
                                           "output_tokens",
                                           "all_to_all",
                                           "tokens_per_s",
                                           "decode_tokens_per_s",
                                           "ttft_s",
                                           "tpot_p50_ms",
                                           "tpot_p99_ms",
                                           "peak_hbm_gib",
                                           "kv_cache_gib",
                                           "h2d_gib_per_pass",
                                           "pcie_utilization",
                                           "pcie_bound_fraction",
                                           "elapsed_s"};
}  // namespace

std::string csv_header() {
  std::string line;
  for (const auto& col : kColumns) line += (line.empty() ? "" : ",") + col;
  return line + "\n";
}

std::string csv_row(const nlohmann::json& run) {
  std::string line;
  for (std::size_t i = 0; i < kColumns.size(); ++i) {
    const nlohmann::json& v = run.at(kColumns[i]);
    std::string cell;
    if (v.is_string()) {
      cell = v.get<std::string>();
    } else if (v.is_number_integer()) {
      cell = std::to_string(v.get<long long>());
    } else if (v.is_number()) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.6g", v.get<double>());
      cell = buf;
    }  // null: empty cell
    line += (i ? "," : "") + cell;
  }
  return line + "\n";
}

}  // namespace moesys::policies::inference
