#include "policies/training/training_config.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/error.hpp"
#include "core/json_input.hpp"
#include "core/model_zoo.hpp"
#include "core/workload.hpp"

namespace moesys::policies::training {

using nlohmann::json;

namespace {

std::string at(const std::string& base, const std::string& key) {
  return base.empty() ? key : base + "." + key;
}

void only_keys(const json& j, const std::string& file, const std::string& path, const std::set<std::string>& keys) {
  if (!j.is_object()) throw core::ConfigError(file, path, "expected an object, got " + j.dump());
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (keys.count(it.key())) continue;
    std::string valid;
    for (const auto& k : keys) valid += (valid.empty() ? "" : ", ") + k;
    throw core::ConfigError(file, at(path, it.key()), "unknown key (valid keys: " + valid + ")");
  }
}

std::int64_t positive_int(const json& j, const std::string& file, const std::string& path, std::int64_t max) {
  if (!j.is_number_integer() || j.get<std::int64_t>() < 1 || j.get<std::int64_t>() > max)
    throw core::ConfigError(file, path, "expected an integer in [1, " + std::to_string(max) + "], got " + j.dump());
  return j.get<std::int64_t>();
}

std::int64_t count_int(const json& j, const std::string& file, const std::string& path, std::int64_t max) {
  if (!j.is_number_integer() || j.get<std::int64_t>() < 0 || j.get<std::int64_t>() > max)
    throw core::ConfigError(file, path, "expected an integer in [0, " + std::to_string(max) + "], got " + j.dump());
  return j.get<std::int64_t>();
}

std::string string_of(const json& j, const std::string& file, const std::string& path) {
  if (!j.is_string() || j.get<std::string>().empty())
    throw core::ConfigError(file, path, "expected a non-empty string, got " + j.dump());
  return j.get<std::string>();
}

core::ModelConfig parse_model(const json& j, const std::string& file) {
  if (!j.is_object()) throw core::ConfigError(file, "model", "expected an object");
  if (!j.contains("preset")) return core::parse_model_config(j, file, "model");
  // A zoo model by name ("mixtral-8x7b", "gpt-moe-64e"), or the paper's family with its expert count ("gpt-moe"
  // and "experts"), then any field the config overrides; the merged object is validated as a whole.
  const std::string name = string_of(j["preset"], file, "model.preset");
  json merged;
  if (name == "gpt-moe") {
    if (!j.contains("experts")) throw core::ConfigError(file, "model.experts", "missing required key");
    const int experts = static_cast<int>(positive_int(j["experts"], file, "model.experts", 1 << 20));
    merged = core::to_json(core::ModelConfig::paper_gpt_moe(experts));
  } else if (auto zoo = core::zoo_model_json(name)) {
    merged = *zoo;
  } else {
    throw core::ConfigError(file, "model.preset",
                            "unknown model " + j["preset"].dump() + " (known: gpt-moe with \"experts\", " +
                                core::zoo_model_names() + ")");
  }
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "preset") continue;
    // The dense FFN width is given one way or the other: an override of one replaces the other.
    if (it.key() == "ffn_hidden") merged.erase("ffn_multiplier");
    if (it.key() == "ffn_multiplier") merged.erase("ffn_hidden");
    merged[it.key()] = *it;
  }
  return core::parse_model_config(merged, file, "model");
}

void parse_multitask(const json& j, const std::string& file, TrainingConfig& c) {
  only_keys(j, file, "workload", {"kind", "tasks", "seed"});
  if (!j.contains("tasks") || !j["tasks"].is_array() || j["tasks"].empty())
    throw core::ConfigError(file, "workload.tasks", "expected a non-empty array of tasks");
  std::set<std::string> names;
  for (std::size_t i = 0; i < j["tasks"].size(); ++i) {
    const std::string p = "workload.tasks[" + std::to_string(i) + "]";
    const json& t = j["tasks"][i];
    only_keys(t, file, p, {"name", "sequences", "affinity"});
    TaskWorkload task;
    if (!t.contains("name")) throw core::ConfigError(file, p + ".name", "missing required key");
    task.name = string_of(t["name"], file, p + ".name");
    if (!names.insert(task.name).second) throw core::ConfigError(file, p + ".name", "duplicate task name");
    if (!t.contains("sequences")) throw core::ConfigError(file, p + ".sequences", "missing required key");
    task.sequences = positive_int(t["sequences"], file, p + ".sequences", 1 << 24);
    if (t.contains("affinity")) {
      const json& a = t["affinity"];
      if (!a.is_number() || a.get<double>() < 0 || a.get<double>() > 1)
        throw core::ConfigError(file, p + ".affinity", "expected a number in [0, 1], got " + a.dump());
      task.affinity = a.get<double>();
    }
    c.tasks.push_back(task);
  }
  if (j.contains("seed"))
    c.workload_seed = static_cast<std::uint64_t>(positive_int(j["seed"], file, "workload.seed", INT64_MAX));
  std::int64_t total = 0;
  for (const auto& t : c.tasks) total += t.sequences;
  if (total > core::kModelLimits.global_batch.max)
    throw core::ConfigError(file, "workload.tasks",
                            std::to_string(total) + " sequences per step; at most " +
                                std::to_string(core::kModelLimits.global_batch.max) + " (model.global_batch's limit)");
  c.model.global_batch = static_cast<int>(total);
}

std::filesystem::path resolve(const std::string& file, const std::string& name) {
  std::filesystem::path p = name;
  if (p.is_relative() && !file.empty()) {
    auto beside = std::filesystem::path(file).parent_path() / p;
    std::error_code ignored;
    if (std::filesystem::exists(beside, ignored)) return beside;
  }
  return p;
}

/// "spine_oversubscription": leaf uplinks carry 1/x of the leaf's downlink capacity (what-if fabrics); "pxn": false
/// runs NCCL without PXN (NCCL_PXN_DISABLE=1).
void apply_fabric(const json& j, const std::string& file, TrainingConfig& c) {
  if (j.contains("pxn")) {
    if (!j["pxn"].is_boolean())
      throw core::ConfigError(file, "cluster.pxn", "expected true or false, got " + j["pxn"].dump());
    c.cluster.node.nics.pxn = j["pxn"].get<bool>();
  }
  if (!j.contains("spine_oversubscription")) return;
  const json& v = j["spine_oversubscription"];
  if (!v.is_number() || !(v.get<double>() >= 1) || v.get<double>() > 1e6)
    throw core::ConfigError(file, "cluster.spine_oversubscription", "expected a number >= 1, got " + v.dump());
  c.cluster.fabric.oversubscription = v.get<double>();
  c.cluster = core::parse_cluster(core::cluster_to_json(c.cluster), file.empty() ? "<flags>" : file);
}

void parse_cluster(const json& j, const std::string& file, TrainingConfig& c) {
  if (j.contains("file")) {
    only_keys(j, file, "cluster", {"file", "nodes", "gpus", "spine_oversubscription", "pxn"});
    auto path = resolve(file, string_of(j["file"], file, "cluster.file"));
    std::error_code no_file;  // a name too long for the file system is no file either, not a failure
    if (!std::filesystem::exists(path, no_file))
      throw core::ConfigError(file, "cluster.file", "no cluster description at \"" + path.string() + "\"");
    c.cluster = core::load_cluster_file(path.string());
    if (j.contains("nodes")) {
      c.cluster.nodes = static_cast<int>(positive_int(j["nodes"], file, "cluster.nodes", 1 << 16));
      c.cluster = core::parse_cluster(core::cluster_to_json(c.cluster), path.string());  // revalidate
    }
    c.gpus = j.contains("gpus")
                 ? static_cast<int>(positive_int(j["gpus"], file, "cluster.gpus", c.cluster.total_gpus()))
                 : c.cluster.total_gpus();
    apply_fabric(j, file, c);
    return;
  }
  only_keys(j, file, "cluster",
            {"gpus", "gpu", "gpus_per_node", "nics_per_node", "nic_gbps", "spine_oversubscription", "pxn"});
  core::ClusterGeneratorOptions o;
  if (j.contains("gpus_per_node"))
    o.gpus_per_node = static_cast<int>(positive_int(j["gpus_per_node"], file, "cluster.gpus_per_node", 64));
  if (j.contains("nics_per_node"))
    o.nics_per_node = static_cast<int>(positive_int(j["nics_per_node"], file, "cluster.nics_per_node", 64));
  if (j.contains("nic_gbps")) {
    if (!j["nic_gbps"].is_number() || !(j["nic_gbps"].get<double>() > 0))
      throw core::ConfigError(file, "cluster.nic_gbps", "expected a positive number, got " + j["nic_gbps"].dump());
    o.nic_gbits_per_s = j["nic_gbps"].get<double>();
  }
  if (j.contains("gpu")) o.gpu = string_of(j["gpu"], file, "cluster.gpu");
  int gpus = o.nodes * o.gpus_per_node;
  if (j.contains("gpus")) gpus = static_cast<int>(positive_int(j["gpus"], file, "cluster.gpus", 1 << 20));
  if (gpus > o.gpus_per_node && gpus % o.gpus_per_node != 0)
    throw core::ConfigError(file, "cluster.gpus",
                            "expected whole nodes: a multiple of gpus_per_node (" + std::to_string(o.gpus_per_node) +
                                ") or at most one node, got " + std::to_string(gpus));
  o.nodes = (gpus + o.gpus_per_node - 1) / o.gpus_per_node;
  try {
    c.cluster = core::generate_cluster(o);
  } catch (const core::ConfigError& e) {
    // The generator names its flags (--gpu, --gpus-per-node, ...); here they are keys of the cluster object.
    std::string key = e.json_path();
    while (!key.empty() && key.front() == '-') key.erase(key.begin());
    std::replace(key.begin(), key.end(), '-', '_');
    if (key == "nic_gbps" || key == "gpu" || key == "gpus_per_node" || key == "nics_per_node")
      throw core::ConfigError(file, "cluster." + key, e.message());
    throw core::ConfigError(file, "cluster", e.message());
  }
  c.gpus = gpus;
  apply_fabric(j, file, c);
}

/// parallel.recompute_modules: only with selective recomputation; all modules when absent.
void parse_recompute_modules(const json& p, const std::string& file, TrainingConfig& c) {
  RecomputeModules& m = c.recompute_modules;
  if (!p.contains("recompute_modules")) {
    if (c.recompute == Recompute::selective) m = {true, true, true, true};
    return;
  }
  const json& list = p["recompute_modules"];
  if (c.recompute != Recompute::selective)
    throw core::ConfigError(file, "parallel.recompute_modules", "only with \"recompute\": \"selective\"");
  if (!list.is_array() || list.empty())
    throw core::ConfigError(file, "parallel.recompute_modules",
                            "expected a non-empty array of \"layernorm\", \"moe_act\", \"mlp\", \"mla_up_proj\", got " +
                                list.dump());
  for (std::size_t i = 0; i < list.size(); ++i) {
    const json& v = list[i];
    const std::string path = "parallel.recompute_modules[" + std::to_string(i) + "]";
    if (v == "layernorm") m.layernorm = true;
    else if (v == "moe_act") m.moe_act = true;
    else if (v == "mlp") m.mlp = true;
    else if (v == "mla_up_proj") m.mla_up_proj = true;
    else throw core::ConfigError(file, path,
                                 "expected \"layernorm\", \"moe_act\", \"mlp\" or \"mla_up_proj\", got " + v.dump());
  }
}

/// The parallel layout. Divisibility against the world and the model is checked when the run is planned
/// (layout.cpp), so that a study can report such a run as infeasible rather than refuse the whole file.
void parse_parallel(const json& p, const std::string& file, TrainingConfig& c) {
  only_keys(p, file, "parallel",
            {"ep", "expert_parallel", "pp", "stage_layers", "recompute", "recompute_modules", "tp", "vpp", "etp", "cp"});
  if (p.contains("ep") && p.contains("expert_parallel"))
    throw core::ConfigError(file, "parallel.expert_parallel", "give \"ep\" or its older name, not both");
  const char* ep_key = p.contains("ep") ? "ep" : "expert_parallel";
  if (p.contains("cp")) c.context_parallel = static_cast<int>(positive_int(p["cp"], file, "parallel.cp", 64));
  if (p.contains("etp")) c.expert_tensor_parallel = static_cast<int>(positive_int(p["etp"], file, "parallel.etp", 64));
  if (p.contains("pp")) c.pipeline_parallel = static_cast<int>(positive_int(p["pp"], file, "parallel.pp", 1 << 10));
  if (p.contains("vpp")) c.virtual_stages = static_cast<int>(positive_int(p["vpp"], file, "parallel.vpp", 64));
  c.expert_parallel = p.contains(ep_key) ? static_cast<int>(positive_int(p[ep_key], file, at("parallel", ep_key), 1 << 20))
                                         : std::min(c.gpus / std::max(1, c.pipeline_parallel * c.expert_tensor_parallel),
                                                    c.model.experts);
  c.expert_parallel = std::max(c.expert_parallel, 1);
  if (p.contains("tp")) c.tensor_parallel = static_cast<int>(positive_int(p["tp"], file, "parallel.tp", 64));
  if (p.contains("stage_layers")) {
    const json& s = p["stage_layers"];
    if (!s.is_array() || s.empty())
      throw core::ConfigError(file, "parallel.stage_layers", "expected an array of layer counts, one per stage");
    int sum = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
      // A chunk may hold no layer: it passes activations on, or (the last) computes the logits and the
      // multi-token prediction modules alone, as Megatron's pipeline layouts place them.
      const int n = static_cast<int>(
          count_int(s[i], file, "parallel.stage_layers[" + std::to_string(i) + "]", c.model.layers));
      c.stage_layers.push_back(n);
      sum += n;
    }
    const int chunks = c.pipeline_parallel * c.virtual_stages;
    if (static_cast<int>(c.stage_layers.size()) != chunks)
      throw core::ConfigError(file, "parallel.stage_layers",
                              "expected one count per pipeline stage" +
                                  std::string(c.virtual_stages > 1 ? " and model chunk, chunk v of stage s at v x pp + s" : "") +
                                  " (" + std::to_string(chunks) + "), got " + std::to_string(c.stage_layers.size()));
    if (sum != c.model.layers)
      throw core::ConfigError(file, "parallel.stage_layers",
                              "expected counts that sum to the model's " + std::to_string(c.model.layers) +
                                  " layers, got " + std::to_string(sum));
  }
  if (p.contains("recompute")) {
    const json& r = p["recompute"];
    if (r == "none") c.recompute = Recompute::none;
    else if (r == "selective") c.recompute = Recompute::selective;
    else if (r == "full") c.recompute = Recompute::full;
    else throw core::ConfigError(file, "parallel.recompute", "expected \"none\", \"selective\" or \"full\", got " + r.dump());
  }
  parse_recompute_modules(p, file, c);
}

}  // namespace

const char* to_string(Recompute r) {
  switch (r) {
    case Recompute::full: return "full";
    case Recompute::selective: return "selective";
    case Recompute::none: break;
  }
  return "none";
}

json read_json_file(const std::string& path) {
  return core::read_json_file(path);
}

TrainingConfig parse_training_config(const json& j, const std::string& file) {
  only_keys(j, file, "", {"model", "workload", "cluster", "parallel", "policy", "steps", "seed", "learning_rate"});
  TrainingConfig c;
  c.file = file;
  if (!j.contains("model")) throw core::ConfigError(file, "model", "missing required key");
  c.model = parse_model(j["model"], file);
  parse_cluster(j.value("cluster", json::object()), file, c);
  if (j.contains("steps")) c.steps = static_cast<int>(positive_int(j["steps"], file, "steps", 1000));
  c.policy = parse_policy(j.value("policy", json::object()), file, "policy");
  if (j.contains("learning_rate")) {
    const json& lr = j["learning_rate"];
    if (!lr.is_number() || !(lr.get<double>() > 0) || !(lr.get<double>() < 1e3))
      throw core::ConfigError(file, "learning_rate", "expected a number in (0, 1000)");
    c.learning_rate = lr.get<double>();
  }

  parse_parallel(j.value("parallel", json::object()), file, c);
  if (j.contains("workload")) {
    const json& w = j["workload"];
    if (!w.is_object() || !w.contains("kind") || !w["kind"].is_string())
      throw core::ConfigError(file, "workload.kind", "expected a workload object with a \"kind\"");
    if (w["kind"] == "multitask") {
      parse_multitask(w, file, c);
    } else {
      c.workload = w;
      // Validate the routing model now (kind, keys, trace file shape) so that errors surface before any run.
      const int moe_layers = c.model.moe_blocks();
      const int stage_ranks = c.gpus % c.pipeline_parallel == 0 ? c.gpus / c.pipeline_parallel : c.gpus;
      core::make_routing_model(w, file, "workload", stage_ranks, c.model.experts, moe_layers,
                               c.model.tokens_per_micro_batch(), c.model.top_k);
    }
  }
  if (j.contains("seed")) {
    const auto seed = static_cast<std::uint64_t>(positive_int(j["seed"], file, "seed", INT64_MAX));
    c.workload_seed = seed;
    if (!c.multitask() && c.workload.contains("seed") == false && c.workload["kind"] != "uniform" &&
        c.workload["kind"] != "trace")
      c.workload["seed"] = seed;
  }
  return c;
}

json describe_config(const TrainingConfig& c) {
  json d = {{"model", core::to_json(c.model)},
            {"params", c.model.total_params()},
            {"cluster", c.cluster.name},
            {"gpu", c.cluster.node.gpu.model},
            {"gpus", c.gpus},
            {"nodes", (c.gpus + c.cluster.node.gpus - 1) / c.cluster.node.gpus},
            {"expert_parallel", c.expert_parallel},
            {"spine_oversubscription", c.cluster.fabric.oversubscription},
            {"pxn", c.cluster.node.nics.pxn},
            {"policy", to_json(c.policy)},
            {"policy_name", describe(c.policy)},
            {"steps", c.steps}};
  if (c.tensor_parallel > 1) d["tensor_parallel"] = c.tensor_parallel;
  if (c.expert_tensor_parallel > 1) d["expert_tensor_parallel"] = c.expert_tensor_parallel;
  if (c.context_parallel > 1) d["context_parallel"] = c.context_parallel;
  if (c.pipeline_parallel > 1) d["pipeline_parallel"] = c.pipeline_parallel;  // new keys only when used, so that
  if (c.virtual_stages > 1) d["virtual_stages"] = c.virtual_stages;
  if (!c.stage_layers.empty()) d["stage_layers"] = c.stage_layers;           // earlier reports stay byte-identical
  if (c.recompute != Recompute::none) d["recompute"] = to_string(c.recompute);
  if (c.recompute == Recompute::selective) {
    json modules = json::array();
    if (c.recompute_modules.layernorm) modules.push_back("layernorm");
    if (c.recompute_modules.moe_act) modules.push_back("moe_act");
    if (c.recompute_modules.mlp) modules.push_back("mlp");
    if (c.recompute_modules.mla_up_proj) modules.push_back("mla_up_proj");
    d["recompute_modules"] = modules;
  }
  if (c.multitask()) {
    json tasks = json::array();
    for (const auto& t : c.tasks)
      tasks.push_back({{"name", t.name}, {"sequences", t.sequences}, {"affinity", t.affinity}});
    d["workload"] = {{"kind", "multitask"}, {"tasks", tasks}, {"seed", c.workload_seed}};
  } else {
    d["workload"] = c.workload;
  }
  return d;
}

}  // namespace moesys::policies::training
