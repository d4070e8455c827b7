#pragma once
// One text-generation run: the model, the serving shape (GPUs, batch, prompt and output lengths), how expert
// weights are held (the memory policy) and how tokens reach remote experts. Shared by `moesys infer` (flags) and
// inference studies (JSON), which name fields differently in errors: a FieldNamer turns a field into its flag or
// JSON path.
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "core/model_config.hpp"
#include "core/runtime.hpp"
#include "policies/training/expert_replicas.hpp"

namespace moesys::policies::inference {

/// Where expert (and, for DeepSpeed, all layer) weights live on the host. Pinned memory can be DMA'd directly;
/// pageable memory is first copied by the CPU into a pinned staging buffer (what the CUDA driver does).
enum class HostMemory { pinned, pageable };
const char* to_string(HostMemory h);

/// The most sequences one GPU decodes together: far beyond what any GPU's memory holds, so a larger batch is a
/// typo, refused before its KV cache is sized.
constexpr int kMaxBatchPerGpu = 1 << 20;
/// The most tokens one run generates per sequence: each is a simulated forward pass.
constexpr int kMaxOutputTokens = 1 << 16;

struct InferenceConfig {
  std::string preset;  // label of the run in tables and plots; defaults to the policy name
  core::ModelConfig model;
  std::string policy = "moesys";  // a name from the registry in policies.hpp
  int ring_slots = 2;             // K: GPU slots of the moesys ring (ignored by other policies)
  HostMemory host_memory = HostMemory::pinned;
  int gpus = 1;   // ranks; experts are split evenly over them (expert parallelism)
  int batch = 8;  // sequences per GPU, decoded together
  int prompt_tokens = 128;
  int output_tokens = 32;  // tokens generated per sequence (the first comes out of the prefill)
  core::CollectiveAlgo all_to_all = core::CollectiveAlgo::hierarchical;  // direct = flat
  nlohmann::json workload = {{"kind", "uniform"}};                       // routing model (core/workload.hpp)
  /// Spare expert slots holding copies of loaded experts (all-in-GPU weights only; training/expert_replicas.hpp).
  training::ReplicaSettings replicas;

  int experts_per_gpu() const { return model.experts / gpus; }
  int decode_steps() const { return output_tokens - 1; }
  int forward_passes() const { return output_tokens; }  // prefill + decode steps
  int max_context() const { return prompt_tokens + output_tokens; }
};

/// Maps a field name ("ring_slots") to what the user wrote ("--ring-slots" or "runs[2].ring_slots").
struct FieldNamer {
  std::string file;  // empty for flags
  std::function<std::string(const std::string&)> path;
  [[noreturn]] void fail(const std::string& field, const std::string& message) const;
};
FieldNamer flag_namer();
FieldNamer json_namer(const std::string& file, const std::string& base);

/// "gpt-moe-<E>e": the paper's 12-layer, hidden-4096 family with E experts (ModelConfig::paper_gpt_moe).
/// Returns false if `name` is not such a preset.
bool model_preset(const std::string& name, core::ModelConfig& out);
/// A model given as a preset name or a full model object. Training-only keys (micro_batch, global_batch) are
/// optional here: inference takes its batch from the run.
core::ModelConfig parse_inference_model(const nlohmann::json& j, const std::string& file, const std::string& path);

/// Checks everything that does not need the cluster's memory sizes: ranges, divisibility, known names, K against
/// the number of MoE layers. Throws core::ConfigError naming the field.
void validate(const InferenceConfig& c, const FieldNamer& names, int cluster_gpus);

/// The run as JSON (the model as a full object) and back: how a real run's settings reach its worker processes.
nlohmann::json to_json(const InferenceConfig& c);
/// Throws core::ConfigError naming `file` and the key on malformed input.
InferenceConfig inference_config_from_json(const nlohmann::json& j, const std::string& file);

/// "flat" (direct) or "hierarchical"; throws ConfigError through `names` otherwise.
core::CollectiveAlgo parse_all_to_all(const std::string& s, const FieldNamer& names);
HostMemory parse_host_memory(const std::string& s, const FieldNamer& names);
const char* all_to_all_name(core::CollectiveAlgo a);

}  // namespace moesys::policies::inference
