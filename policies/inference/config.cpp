#include "policies/inference/config.hpp"

#include <regex>
#include <utility>

#include "core/error.hpp"
#include "core/model_zoo.hpp"
#include "policies/inference/policies.hpp"
#include "policies/training/policy.hpp"

namespace moesys::policies::inference {

const char* to_string(HostMemory h) {
  return h == HostMemory::pinned ? "pinned" : "pageable";
}

void FieldNamer::fail(const std::string& field, const std::string& message) const {
  throw core::ConfigError(file, path(field), message);
}

FieldNamer flag_namer() {
  return FieldNamer{"", [](const std::string& field) {
                      std::string flag = "--" + field;
                      for (char& ch : flag)
                        if (ch == '_') ch = '-';
                      // The flags are shorter than the JSON keys for the two lengths.
                      if (field == "prompt_tokens") return std::string("--prompt");
                      if (field == "output_tokens") return std::string("--output");
                      return flag;
                    }};
}

FieldNamer json_namer(const std::string& file, const std::string& base) {
  return FieldNamer{file, [base](const std::string& field) { return base.empty() ? field : base + "." + field; }};
}

namespace {
/// Generation serves the main model: multi-token prediction modules train the shared layers (or draft tokens for
/// speculative decoding, which the program does not model) and are left out.
core::ModelConfig served_model(core::ModelConfig m) {
  m.mtp_layers = 0;
  return m;
}
}  // namespace

bool model_preset(const std::string& name, core::ModelConfig& out) {
  const auto zoo = core::zoo_model_json(name);
  if (!zoo) return false;
  out = served_model(core::parse_model_config(*zoo, "models/" + name + ".json", "model"));
  return true;
}

core::ModelConfig parse_inference_model(const nlohmann::json& j, const std::string& file, const std::string& path) {
  if (j.is_string()) {
    core::ModelConfig m;
    if (!model_preset(j.get<std::string>(), m))
      throw core::ConfigError(file, path,
                              "unknown model preset \"" + j.get<std::string>() +
                                  "\" (known: " + core::zoo_model_names() + ", or a model object)");
    return m;
  }
  if (!j.is_object()) throw core::ConfigError(file, path, "expected a preset name or a model object");
  // Batch sizes belong to the run, not the model; the shared parser requires them, so fill in a neutral value.
  nlohmann::json copy = j;
  if (!copy.contains("micro_batch")) copy["micro_batch"] = 1;
  if (!copy.contains("global_batch")) copy["global_batch"] = copy["micro_batch"];
  return served_model(core::parse_model_config(copy, file, path));
}

core::CollectiveAlgo parse_all_to_all(const std::string& s, const FieldNamer& names) {
  if (s == "flat") return core::CollectiveAlgo::direct;
  if (s == "hierarchical") return core::CollectiveAlgo::hierarchical;
  if (s == "deepep") return core::CollectiveAlgo::deepep;
  names.fail("all_to_all", "expected \"flat\", \"hierarchical\" or \"deepep\", got \"" + s + "\"");
}

HostMemory parse_host_memory(const std::string& s, const FieldNamer& names) {
  if (s == "pinned") return HostMemory::pinned;
  if (s == "pageable") return HostMemory::pageable;
  names.fail("host_memory", "expected \"pinned\" or \"pageable\", got \"" + s + "\"");
}

nlohmann::json to_json(const InferenceConfig& c) {
  return {{"preset", c.preset},
          {"model", core::to_json(c.model)},
          {"policy", c.policy},
          {"ring_slots", c.ring_slots},
          {"host_memory", to_string(c.host_memory)},
          {"gpus", c.gpus},
          {"batch", c.batch},
          {"prompt_tokens", c.prompt_tokens},
          {"output_tokens", c.output_tokens},
          {"all_to_all", all_to_all_name(c.all_to_all)},
          {"workload", c.workload},
          {"replicas", training::replicas_json(c.replicas)}};
}

InferenceConfig inference_config_from_json(const nlohmann::json& j, const std::string& file) {
  const FieldNamer names = json_namer(file, "");
  auto get = [&](const char* key) -> const nlohmann::json& {
    if (!j.is_object() || !j.contains(key)) names.fail(key, "missing required key");
    return j.at(key);
  };
  auto integer = [&](const char* key) {
    if (!get(key).is_number_integer()) names.fail(key, "expected an integer");
    return get(key).get<int>();
  };
  auto text = [&](const char* key) {
    if (!get(key).is_string()) names.fail(key, "expected a string");
    return get(key).get<std::string>();
  };
  InferenceConfig c;
  c.preset = text("preset");
  c.model = parse_inference_model(get("model"), file, "model");
  c.policy = text("policy");
  c.ring_slots = integer("ring_slots");
  c.host_memory = parse_host_memory(text("host_memory"), names);
  c.gpus = integer("gpus");
  c.batch = integer("batch");
  c.prompt_tokens = integer("prompt_tokens");
  c.output_tokens = integer("output_tokens");
  c.all_to_all = parse_all_to_all(text("all_to_all"), names);
  c.workload = get("workload");
  if (j.contains("replicas")) c.replicas = training::parse_replicas(j["replicas"], {}, file, "replicas");
  return c;
}

const char* all_to_all_name(core::CollectiveAlgo a) {
  if (a == core::CollectiveAlgo::deepep) return "deepep";
  return a == core::CollectiveAlgo::direct ? "flat" : "hierarchical";
}

void validate(const InferenceConfig& c, const FieldNamer& names, int cluster_gpus) {
  const std::string known = policy_names();
  if (!find_policy(c.policy)) names.fail("policy", "unknown policy \"" + c.policy + "\" (known: " + known + ")");
  const int moe_layers = c.model.moe_layers();
  if (c.policy == "moesys") {
    if (c.ring_slots < 1)
      names.fail("ring_slots", "expected at least 1 ring slot, got " + std::to_string(c.ring_slots));
    if (c.ring_slots > moe_layers)
      names.fail("ring_slots", "K = " + std::to_string(c.ring_slots) + " ring slots is more than the model's " +
                                   std::to_string(moe_layers) + " MoE layers (expected 1.." +
                                   std::to_string(moe_layers) + ")");
    if (c.host_memory != HostMemory::pinned)
      names.fail("host_memory", "the moesys ring copies from pinned host memory; pageable applies to deepspeed");
  }
  if (moe_layers < 1) names.fail("model", "expected a model with at least one MoE layer");
  if (c.gpus < 1 || c.gpus > cluster_gpus)
    names.fail("gpus",
               "expected 1.." + std::to_string(cluster_gpus) + " GPUs (the cluster's), got " + std::to_string(c.gpus));
  if (c.model.experts % c.gpus != 0)
    names.fail("gpus", std::to_string(c.gpus) + " GPUs do not divide the model's " + std::to_string(c.model.experts) +
                           " experts (expert parallelism places E/G experts on each GPU)");
  if (c.batch < 1) names.fail("batch", "expected at least 1 sequence, got " + std::to_string(c.batch));
  if (c.batch > kMaxBatchPerGpu)
    names.fail("batch", "expected at most " + std::to_string(kMaxBatchPerGpu) + " sequences per GPU, got " +
                            std::to_string(c.batch));
  if (c.prompt_tokens < 1)
    names.fail("prompt_tokens", "expected at least 1 token, got " + std::to_string(c.prompt_tokens));
  if (c.output_tokens < 1)
    names.fail("output_tokens", "expected at least 1 token, got " + std::to_string(c.output_tokens));
  if (c.output_tokens > kMaxOutputTokens)
    names.fail("output_tokens", "expected at most " + std::to_string(kMaxOutputTokens) +
                                    " tokens (one simulated forward pass each), got " + std::to_string(c.output_tokens));
  // Each length alone first: their sum in int would overflow for lengths near 2^31 and pass the check below.
  for (const auto& [field, tokens] : {std::pair<const char*, int>{"prompt_tokens", c.prompt_tokens},
                                      std::pair<const char*, int>{"output_tokens", c.output_tokens}})
    if (tokens > c.model.seq_len)
      names.fail(field, std::to_string(tokens) + " tokens exceeds the model's " + std::to_string(c.model.seq_len) +
                            " learned positions");
  if (c.max_context() > c.model.seq_len)
    names.fail("output_tokens", "prompt + output = " + std::to_string(c.max_context()) +
                                    " tokens exceeds the model's " + std::to_string(c.model.seq_len) +
                                    " learned positions");
}

}  // namespace moesys::policies::inference
