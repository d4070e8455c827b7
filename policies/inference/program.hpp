#pragma once
// A generation run prepared for any runtime: validated, routed, and planned as the one per-rank program in its
// generation mode (policies/training/generation.cpp: prefill + decode with a KV cache, the MoE layer and dense
// layers of training, the expert-residency manager) with this run's memory policy. Every rank serves its own
// batch (dense layers data parallel) and holds E/G experts of every MoE layer (expert parallelism): tokens reach
// their experts and come back through two all-to-alls per MoE layer.
#include <functional>
#include <vector>

#include "core/runtime.hpp"
#include "policies/inference/plan.hpp"
#include "policies/inference/routing.hpp"
#include "policies/training/training_plan.hpp"

namespace moesys::policies::inference {

struct PreparedRun {
  InferenceConfig config;
  WeightSizes sizes;
  RoutingTables routing;  // what the simulator routes; real runtimes take the gate's choices
  MemoryPlan plan;
  training::TrainingPlan program;
};

/// Validates the run, computes its routing, plans the program and checks its memory plan against the cluster.
/// Errors are core::ConfigError (named through `names`) or core::InfeasibleError with the numbers.
PreparedRun prepare_run(const InferenceConfig& c, const core::ClusterSpec& spec, const FieldNamer& names);

/// The program's settings for a run: the model, the layout, the policy's toggles and the generation's shape.
training::TrainingConfig program_config(const InferenceConfig& c, const core::ClusterSpec& spec);
training::GenerationPlan generation_settings(const InferenceConfig& c);

/// What one rank saw: the time each pass's tokens were sampled (the host waits for them, as generation loops
/// must to feed the next token in and to check for the end of sequences), the parameter bytes it copied host ->
/// device (in all and issued by each pass), and on real runtimes the sampled tokens [pass][sequence].
struct RankRecord {
  std::vector<double> pass_end_s;
  std::uint64_t h2d_bytes = 0;
  std::vector<double> pass_h2d_bytes;
  std::vector<std::vector<std::int32_t>> tokens;
};

/// The program every rank runs; rank r writes records[r] (resized to the number of GPUs by the caller).
std::function<void(core::Runtime&)> generation_program(const PreparedRun& run, std::vector<RankRecord>& records);

}  // namespace moesys::policies::inference
