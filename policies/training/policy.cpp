#include "policies/training/policy.hpp"

#include <cmath>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "core/units.hpp"

namespace moesys::policies::training {

using nlohmann::json;

namespace {

template <typename E>
using Names = std::vector<std::pair<E, const char*>>;

const Names<Gate> kGate = {{Gate::gshard, "gshard"}, {Gate::dropless, "dropless"}};
const Names<Dispatch> kDispatch = {{Dispatch::padded, "padded"}, {Dispatch::counts, "counts"}};
const Names<AllToAll> kAllToAll = {
    {AllToAll::flat, "flat"}, {AllToAll::hierarchical, "hierarchical"}, {AllToAll::copy_engine, "copy_engine"}};
const Names<Dispatcher> kDispatcher = {
    {Dispatcher::all_to_all, "all_to_all"}, {Dispatcher::all_gather, "all_gather"}, {Dispatcher::deepep, "deepep"}};
const Names<DenseSharding> kDense = {
    {DenseSharding::ddp, "ddp"}, {DenseSharding::zero2, "zero2"}, {DenseSharding::zero3, "zero3"},
    {DenseSharding::distributed, "distributed"}};
const Names<Offload> kOffload = {{Offload::none, "none"}, {Offload::cpu, "cpu"}, {Offload::nvme, "nvme"}};
const Names<Prefetch> kPrefetch = {{Prefetch::all_experts, "all-experts"}, {Prefetch::routed, "2d"}};
const Names<Placement> kPlacement = {{Placement::static_blocks, "static"}, {Placement::elastic, "elastic"}};
const Names<Embedding> kEmbedding = {{Embedding::dense, "dense"}, {Embedding::partition, "partition"}};
const Names<Replication> kReplication = {
    {Replication::none, "none"}, {Replication::eplb, "eplb"}, {Replication::hot, "hot"}};

template <typename E>
const char* name_of(const Names<E>& names, E v) {
  for (const auto& [e, n] : names)
    if (e == v) return n;
  return "?";
}

std::string path_of(const std::string& base, const std::string& key) {
  return base.empty() ? key : base + "." + key;
}

template <typename E>
E parse_enum(const json& v, const Names<E>& names, const std::string& file, const std::string& path) {
  std::string valid;
  for (const auto& [e, n] : names) valid += (valid.empty() ? "" : ", ") + std::string(n);
  if (v.is_string())
    for (const auto& [e, n] : names)
      if (v.get<std::string>() == n) return e;
  throw core::ConfigError(file, path, "expected one of " + valid + ", got " + v.dump());
}

double number_in(const json& v, double lo, double hi, const std::string& file, const std::string& path) {
  if (!v.is_number() || !(v.get<double>() >= lo && v.get<double>() <= hi) || !std::isfinite(v.get<double>()))
    throw core::ConfigError(file, path,
                            "expected a number in [" + json(lo).dump() + ", " + json(hi).dump() + "], got " + v.dump());
  return v.get<double>();
}

int int_in(const json& v, int lo, int hi, const std::string& file, const std::string& path) {
  if (!v.is_number_integer() || v.get<std::int64_t>() < lo || v.get<std::int64_t>() > hi)
    throw core::ConfigError(
        file, path, "expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + v.dump());
  return v.get<int>();
}

CacheSettings parse_cache(const json& j, CacheSettings c, const std::string& file, const std::string& path) {
  if (!j.is_object()) throw core::ConfigError(file, path, "expected an object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string p = path_of(path, it.key());
    if (it.key() == "hit_threshold")
      c.hit_threshold = int_in(*it, 0, 1 << 30, file, p);
    else if (it.key() == "decay_beta")
      c.decay_beta = number_in(*it, 0, 1, file, p);
    else if (it.key() == "decay_every_steps")
      c.decay_every_steps = int_in(*it, 1, 1 << 30, file, p);
    else if (it.key() == "capacity_gib")
      c.capacity_gib = number_in(*it, 0, 1e9, file, p);
    else if (it.key() == "capacity_fraction")
      c.capacity_fraction = number_in(*it, 0, 1, file, p);
    else
      throw core::ConfigError(file, p,
                              "unknown key (valid keys: capacity_fraction, capacity_gib, decay_beta, "
                              "decay_every_steps, hit_threshold)");
  }
  return c;
}

}  // namespace

/// The settings as JSON; scope only when it is not the default, so that earlier results read the same.
json replicas_json(const ReplicaSettings& r) {
  json j = {{"kind", to_string(r.kind)}, {"slots", r.slots}, {"every", r.every}};
  if (r.node_scope) j["scope"] = "node";
  return j;
}

ReplicaSettings parse_replicas(const json& j, ReplicaSettings r, const std::string& file, const std::string& path) {
  if (!j.is_object()) throw core::ConfigError(file, path, "expected an object such as {\"kind\": \"eplb\", \"slots\": 1}");
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string p = path_of(path, it.key());
    if (it.key() == "kind")
      r.kind = parse_enum(*it, kReplication, file, p);
    else if (it.key() == "slots")
      r.slots = int_in(*it, 1, 1024, file, p);
    else if (it.key() == "every")
      r.every = int_in(*it, 1, 1 << 20, file, p);
    else if (it.key() == "scope") {
      if (!it->is_string() || (*it != "global" && *it != "node"))
        throw core::ConfigError(file, p, "expected \"global\" or \"node\" (EPLB's hierarchical form)");
      r.node_scope = *it == "node";
    } else
      throw core::ConfigError(file, p, "unknown key (valid keys: every, kind, scope, slots)");
  }
  if (r.node_scope && r.kind != Replication::eplb)
    throw core::ConfigError(file, path_of(path, "scope"), "applies to kind \"eplb\"");
  return r;
}

const char* to_string(Gate v) {
  return name_of(kGate, v);
}
const char* to_string(Dispatch v) {
  return name_of(kDispatch, v);
}
const char* to_string(AllToAll v) {
  return name_of(kAllToAll, v);
}
const char* to_string(Dispatcher v) {
  return name_of(kDispatcher, v);
}
const char* to_string(DenseSharding v) {
  return name_of(kDense, v);
}
const char* to_string(Offload v) {
  return name_of(kOffload, v);
}
const char* to_string(Prefetch v) {
  return name_of(kPrefetch, v);
}
const char* to_string(Placement v) {
  return name_of(kPlacement, v);
}
const char* to_string(Embedding v) {
  return name_of(kEmbedding, v);
}

std::map<std::string, PresetInfo>& preset_registry() {
  static std::map<std::string, PresetInfo> registry;
  return registry;
}

PresetRegistrar::PresetRegistrar(const std::string& name, std::string description, TrainingPolicy policy) {
  policy.preset = name;
  preset_registry()[name] = PresetInfo{std::move(description), std::move(policy)};
}

std::string known_presets() {
  std::string known;
  for (const auto& [name, info] : preset_registry()) known += (known.empty() ? "" : ", ") + name;
  return known;
}

TrainingPolicy find_preset(const std::string& name, const std::string& file, const std::string& path) {
  auto it = preset_registry().find(name);
  if (it == preset_registry().end())
    throw core::ConfigError(file, path, "unknown preset '" + name + "' (known: " + known_presets() + ")");
  return it->second.policy;
}

TrainingPolicy parse_policy(const json& j, const std::string& file, const std::string& base_path) {
  if (!j.is_object()) throw core::ConfigError(file, base_path, "expected an object with a \"preset\" and toggles");
  std::string preset = "moesys";
  if (auto it = j.find("preset"); it != j.end()) {
    if (!it->is_string()) throw core::ConfigError(file, path_of(base_path, "preset"), "expected a preset name");
    preset = it->get<std::string>();
  }
  TrainingPolicy p = find_preset(preset, file, path_of(base_path, "preset"));
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const std::string path = path_of(base_path, k);
    const json& v = *it;
    if (k == "preset") continue;
    if (k == "gate")
      p.gate = parse_enum(v, kGate, file, path);
    else if (k == "dispatch")
      p.dispatch = parse_enum(v, kDispatch, file, path);
    else if (k == "all_to_all")
      p.all_to_all = parse_enum(v, kAllToAll, file, path);
    else if (k == "dispatcher")
      p.dispatcher = parse_enum(v, kDispatcher, file, path);
    else if (k == "overlap_chunks")
      p.overlap_chunks = int_in(v, 1, 64, file, path);
    else if (k == "dense")
      p.dense = parse_enum(v, kDense, file, path);
    else if (k == "bucket_mib")
      p.bucket_bytes = number_in(v, 0, 1 << 20, file, path) * core::kMiB;
    else if (k == "grad_overlap") {
      if (!v.is_boolean()) throw core::ConfigError(file, path, "expected true or false, got " + v.dump());
      p.grad_overlap = v.get<bool>();
    } else if (k == "offload")
      p.offload = parse_enum(v, kOffload, file, path);
    else if (k == "prefetch")
      p.prefetch = parse_enum(v, kPrefetch, file, path);
    else if (k == "cache")
      p.cache = parse_cache(v, p.cache, file, path);
    else if (k == "placement")
      p.placement = parse_enum(v, kPlacement, file, path);
    else if (k == "embedding")
      p.embedding = parse_enum(v, kEmbedding, file, path);
    else if (k == "replicas")
      p.replicas = parse_replicas(v, p.replicas, file, path);
    else
      throw core::ConfigError(
          file, path,
          "unknown policy toggle (valid: all_to_all, bucket_mib, cache, dense, dispatch, dispatcher, embedding, "
          "gate, grad_overlap, offload, overlap_chunks, placement, prefetch, preset, replicas)");
  }
  return p;
}

json to_json(const TrainingPolicy& p) {
  json j{{"preset", p.preset},
              {"gate", to_string(p.gate)},
              {"dispatch", to_string(p.dispatch)},
              {"all_to_all", to_string(p.all_to_all)},
              {"overlap_chunks", p.overlap_chunks},
              {"dense", to_string(p.dense)},
              {"bucket_mib", p.bucket_bytes / core::kMiB},
              {"grad_overlap", p.grad_overlap},
              {"offload", to_string(p.offload)},
              {"prefetch", to_string(p.prefetch)},
              {"cache",
               {{"hit_threshold", p.cache.hit_threshold},
                {"decay_beta", p.cache.decay_beta},
                {"decay_every_steps", p.cache.decay_every_steps},
                {"capacity_gib", p.cache.capacity_gib},
                {"capacity_fraction", p.cache.capacity_fraction}}},
              {"placement", to_string(p.placement)},
              {"embedding", to_string(p.embedding)},
              {"replicas", replicas_json(p.replicas)}};
  // Written only when not the default, so that results written before the toggle existed read the same.
  if (p.dispatcher != Dispatcher::all_to_all) j["dispatcher"] = to_string(p.dispatcher);
  return j;
}

std::string describe(const TrainingPolicy& p) {
  auto it = preset_registry().find(p.preset);
  if (it == preset_registry().end()) return p.preset;
  const json base = to_json(it->second.policy), mine = to_json(p);
  std::string out = p.preset;
  for (auto kv = mine.begin(); kv != mine.end(); ++kv) {
    if (kv.key() == "preset" || (base.contains(kv.key()) && base.at(kv.key()) == *kv)) continue;
    std::string value = kv->is_string() ? kv->get<std::string>() : kv->dump();
    if (kv.key() == "replicas")  // e.g. replicas=eplb:2/10 (2 spare slots, rebalanced every 10 steps), hot:1
      value = std::string(to_string(p.replicas.kind)) + (p.replicas.node_scope ? "-node" : "") + ":" +
              std::to_string(p.replicas.slots) +
              (p.replicas.kind == Replication::eplb ? "/" + std::to_string(p.replicas.every) : "");
    if (kv->is_number_float() && std::floor(kv->get<double>()) == kv->get<double>() &&
        std::abs(kv->get<double>()) < 1e15)
      value = std::to_string(static_cast<long long>(kv->get<double>()));
    out += "+" + kv.key() + "=" + value;
  }
  return out;
}

}  // namespace moesys::policies::training
