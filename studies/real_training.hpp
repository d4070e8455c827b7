#pragma once
// The training program on real CPU ranks, for `moesys train --runtime cpu` and `moesys validate --preset`: the
// config goes to moesys-exec-worker under mpirun, every rank's spans, memory peaks and losses come back as the
// same SimulatedRun a simulation produces, so one summary and one breakdown serve both.
#include <nlohmann/json.hpp>
#include <vector>

#include "core/workload.hpp"
#include "policies/training/training_run.hpp"

namespace moesys::studies {

/// A GPT-MoE small enough for CPU ranks: 2 layers of width 256, 2 experts per rank, fp32.
nlohmann::json small_cpu_model(int ranks);
/// A zoo model's architecture at the size of small_cpu_model (hidden 256, 64-wide heads, 2 layers plus one dense
/// first layer where the model has them, 2 experts per rank, fp32): every kind of layer, attention, activation,
/// norm, position and output the model has, with its width ratios (FFN / hidden, KV heads / heads) kept.
nlohmann::json reduced_zoo_model(const nlohmann::json& zoo_model, int ranks);

struct RealTrainingRun {
  nlohmann::json machine;  // with probe: the measured cluster, calibration and rates
  policies::training::SimulatedRun run;
  std::vector<policies::training::RankCounters> counters;
};

/// Runs `config` (cluster.gpus ranks) for real; with `probe` the worker measures this machine first and runs on
/// the cluster description built from the rates.
RealTrainingRun run_training_on_cpu(const nlohmann::json& config, int ranks, bool probe);
/// The same on GPUs (one rank per GPU, NCCL), through moesys-cuda-worker.
RealTrainingRun run_training_on_gpus(const nlohmann::json& config, int ranks);

/// The gate's counts a real run recorded, as a routing trace the simulator replays ({"kind": "trace"}): one trace
/// step per micro-batch, in order.
core::RoutingTrace routing_trace(const std::vector<policies::training::RankCounters>& ranks, int experts,
                                 int moe_layers);

}  // namespace moesys::studies
