#pragma once
// What a generation run reports: throughput, latency per token, memory and PCIe use, derived from the per-rank
// records of the program and the runtime's memory ledgers. Pure functions of their inputs (deterministic output).
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "policies/inference/program.hpp"

namespace moesys::policies::inference {

/// What the runtime tells about a finished run.
struct RuntimeOutcome {
  std::vector<std::uint64_t> peak_hbm_bytes;             // per rank
  std::map<std::string, std::uint64_t> peak_hbm_by_tag;  // rank 0, at its peak
};

struct InferenceMetrics {
  double elapsed_s = 0;                          // start to the last token sampled on every rank
  double ttft_s = 0;                             // time to first token: the prefill (and the loads it waited for)
  double tokens_per_s = 0;                       // output tokens of all GPUs over elapsed_s
  double decode_tokens_per_s = 0;                // decode steps only (NaN-free: 0 when there is no decode step)
  std::optional<double> tpot_p50_s, tpot_p99_s;  // time per output token over the decode steps
  std::uint64_t peak_hbm_bytes = 0;              // the largest over ranks
  std::map<std::string, std::uint64_t> peak_hbm_by_tag;
  double link_bytes_per_s = 0;           // host-device bandwidth of one GPU (PCIe at its calibrated efficiency)
  double h2d_bytes_per_rank = 0;         // mean over ranks, whole run
  std::uint64_t h2d_bytes_per_pass = 0;  // steady state, per rank: the weights a decode pass moved (measured)
  double pcie_utilization = 0;           // h2d_bytes_per_rank / (elapsed_s x link_bytes_per_s)
  /// The PCIe bound: a decode step cannot be shorter than h2d_bytes_per_pass / link_bytes_per_s.
  std::optional<double> pcie_bound_tokens_per_s, pcie_bound_fraction;
};

InferenceMetrics summarize(const PreparedRun& run, const std::vector<RankRecord>& records,
                           const RuntimeOutcome& outcome, double link_bytes_per_s);

/// One run as a flat JSON object: its configuration, its memory plan and its metrics.
nlohmann::json run_to_json(const PreparedRun& run, const InferenceMetrics& m);

/// CSV of runs (objects from run_to_json), one row each, fixed columns.
std::string csv_header();
std::string csv_row(const nlohmann::json& run);

}  // namespace moesys::policies::inference
