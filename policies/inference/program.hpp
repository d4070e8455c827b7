#pragma once
// Text generation as a per-rank program over core::Runtime: one prefill pass over the prompts, then one decode
// pass per further output token, reading and appending to a KV cache. Every rank serves its own batch (dense
// layers are data parallel) and holds E/G experts of every MoE layer (expert parallelism): tokens reach their
// experts and come back through two all-to-alls per MoE layer. Weights come from the run's memory policy.
#include <functional>
#include <vector>

#include "core/runtime.hpp"
#include "policies/inference/plan.hpp"
#include "policies/inference/routing.hpp"

namespace moesys::policies::inference {

struct PreparedRun {
  InferenceConfig config;
  WeightSizes sizes;
  RoutingTables routing;
  MemoryPlan plan;
};

/// Validates the run, computes its routing and checks its memory plan against the cluster. Errors are
/// core::ConfigError (named through `names`) or core::InfeasibleError.
PreparedRun prepare_run(const InferenceConfig& c, const core::ClusterSpec& spec, const FieldNamer& names);

/// What one rank saw: the time each pass's tokens were sampled (the host waits for them, as generation loops
/// must to feed the next token in and to check for the end of sequences), and the bytes it copied over PCIe.
struct RankRecord {
  std::vector<double> pass_end_s;
  std::uint64_t h2d_bytes = 0;
};

/// The program every rank runs; rank r writes records[r] (resized to the number of GPUs by the caller).
std::function<void(core::Runtime&)> generation_program(const PreparedRun& run, std::vector<RankRecord>& records);

}  // namespace moesys::policies::inference
