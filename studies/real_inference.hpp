#pragma once
// The generation program on real ranks, for `moesys infer --runtime cpu|cuda`: the run goes to moesys-exec-worker
// (CPU ranks under mpirun) or moesys-cuda-worker (GPUs), and every rank's records and memory peaks come back in the
// shape a simulation produces, so one summary (policies/inference/metrics) serves both.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "policies/inference/metrics.hpp"

namespace moesys::studies {

/// A GPT-MoE small enough for CPU ranks: 2 layers of width 256, 4 heads, 2 experts per rank, 64 positions, fp32.
nlohmann::json small_cpu_inference_model(int ranks);

struct RealInferenceRun {
  std::vector<policies::inference::RankRecord> records;  // per rank, with the sampled tokens
  policies::inference::RuntimeOutcome outcome;
  double wall_s = 0;  // the worker's whole run, launch included
};

/// Runs `c` (c.gpus ranks) on `spec` for real: runtime "cpu" (MPI ranks of this machine) or "cuda" (GPUs).
RealInferenceRun run_inference_for_real(const policies::inference::InferenceConfig& c, const core::ClusterSpec& spec,
                                        const std::string& runtime);

}  // namespace moesys::studies
