#pragma once
// One training configuration: model, workload, cluster, parallel layout, policy, and how many steps to simulate.
// JSON (every block optional except "model"):
//   {"model":    {"preset": "gpt-moe", "experts": 64, <ModelConfig overrides>} | <full ModelConfig object>,
//    "workload": {"kind": "uniform"} | zipf | drift | trace (core/workload.hpp) |
//                {"kind": "multitask", "tasks": [{"name": "a", "sequences": 512, "affinity": 0.8}, ...], "seed": 1},
//    "cluster":  {"gpus": 64, "gpu": "a100-80g", "gpus_per_node": 8, "nics_per_node": 8, "nic_gbps": 200} |
//                {"file": "topologies/dgx-a100-80g.json", "nodes": 8, "gpus": 64}
//                (either form may add "spine_oversubscription": x >= 1, leaf uplinks at 1/x of the downlinks),
//    "parallel": {"ep": 64, "pp": 1, "vpp": 1, "stage_layers": [...], "recompute": "none" | "selective" | "full",
//                 "recompute_modules": ["layernorm", "moe_act", "mlp", "mla_up_proj"], "tp": 2, "etp": 1, "cp": 1}
//                ("expert_parallel" is the older name of "ep"),
//    "policy":   {"preset": "moesys", <toggle overrides>},
//    "steps": 2, "seed": 1, "learning_rate": 0.001}
// A multi-task workload counts each task's batch in sequences per step; the model's global_batch is then their sum.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/cluster.hpp"
#include "core/model_config.hpp"
#include "policies/training/policy.hpp"

namespace moesys::policies::training {

struct TaskWorkload {
  std::string name;
  std::int64_t sequences = 0;  // per optimizer step
  double affinity = 0;         // probability that a token prefers the task's own block of experts
};

/// Activation recomputation: none keeps every layer's activations from forward to backward; full keeps only each
/// layer's input and runs the layer's forward again (collectives included) right before its backward; selective
/// keeps everything but the outputs of some cheap parts (RecomputeModules), which the backward computes again from
/// what is kept, with no communication.
enum class Recompute { none, selective, full };
const char* to_string(Recompute r);

/// The parts selective recomputation drops (Megatron-Core's --recompute-modules names): `layernorm` the outputs of
/// both norms of every layer (recomputed from the layer's input and the attention block's output with the kept
/// statistics); `moe_act` the activation outputs of the routed and shared experts (recomputed from their kept
/// inputs); `mlp` the dense FFN's W1 output and activation (recomputed from the norm output: one GEMM more);
/// `mla_up_proj` multi-head latent attention's per-head queries, keys and values (recomputed from the kept latents
/// by the up-projection GEMMs; no effect on other attention kinds).
struct RecomputeModules {
  bool layernorm = false, moe_act = false, mlp = false, mla_up_proj = false;
};

struct TrainingConfig {
  std::string file;  // where it came from (error messages); empty for flags
  core::ModelConfig model;
  nlohmann::json workload = {{"kind", "uniform"}};  // routing-model object for non-multitask kinds
  std::vector<TaskWorkload> tasks;                  // non-empty: a multi-task workload
  std::uint64_t workload_seed = 1;
  core::ClusterSpec cluster;
  int gpus = 0;             // ranks (rank r on GPU r)
  int expert_parallel = 0;  // size of an expert-parallel group (inside one pipeline stage)
  int tensor_parallel = 1;       // tensor (and sequence) parallel size: contiguous ranks inside a node (layout.hpp)
  int expert_tensor_parallel = 1;  // ranks each routed expert's FFN width is split over (layout.hpp)
  int context_parallel = 1;        // ranks each sequence is split over, one contiguous chunk each (layout.hpp)
  int pipeline_parallel = 1;     // pipeline stages (contiguous blocks of gpus / pp ranks)
  int virtual_stages = 1;        // model chunks per stage (interleaved 1F1B)
  std::vector<int> stage_layers;  // layers of each model chunk (pp x vpp); empty: an even split
  Recompute recompute = Recompute::none;
  RecomputeModules recompute_modules;  // selective: what is not kept (every module unless the config names some)
  TrainingPolicy policy;
  int steps = 2;  // simulated steps; metrics come from the last one
  double learning_rate = 1e-3;  // AdamW step size of real runs (the simulator only counts the update's traffic)

  bool multitask() const { return !tasks.empty(); }
};

/// Parses and validates the JSON above; ConfigError(file, json path, ...) on malformed input. Shape problems
/// that only the combination reveals (divisibility, memory) are checked by check_feasible (memory_plan.hpp).
TrainingConfig parse_training_config(const nlohmann::json& j, const std::string& file);
/// Reads a config file (ConfigError if unreadable or malformed JSON).
nlohmann::json read_json_file(const std::string& path);
/// A compact description for reports: model, cluster, layout and the policy's toggles.
nlohmann::json describe_config(const TrainingConfig& c);

}  // namespace moesys::policies::training
