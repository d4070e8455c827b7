#pragma once
// Training policies: every mechanism the paper compares is one named toggle, and presets compose toggles.
// A policy object in a config names a preset and may override any toggle, which is how the ablation turns on
// one MoESys mechanism at a time:
//   {"preset": "deepspeed", "all_to_all": "hierarchical"}
// Presets live in a registry keyed by name (presets.cpp); unknown names are ConfigErrors listing the known ones.
#include <functional>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "policies/training/expert_replicas.hpp"

namespace moesys::policies::training {

/// Token gate: GShard top-k with a per-expert capacity (overflow tokens are dropped and skip the expert through
/// the residual), or dropless (every assignment is kept).
enum class Gate { gshard, dropless };
/// How tokens reach the experts. `padded`: DeepSpeed-MoE's einsum dispatch, a dense [experts, capacity, hidden]
/// tensor per rank, so the all-to-all and the expert GEMMs always cover `capacity` rows per expert. `counts`:
/// Paddle's global_scatter, an all-to-all of token counts followed by an all-to-all(v) of exactly the kept rows.
enum class Dispatch { padded, counts };
/// Expert all-to-all: one flat all-to-all over the expert-parallel group, the two-step resource-aware one, or the
/// flat one by NCCL's copy engines (no SMs held beside the expert GEMMs; expert-parallel groups inside one NVLink
/// node, CollectiveAlgo::copy_engine).
enum class AllToAll { flat, hierarchical, copy_engine };
/// How routed rows reach their experts (Megatron-Core's token dispatchers). `all_to_all`: each row travels to the
/// rank of its expert (all-to-all(v), with `dispatch`, `all_to_all` and `overlap_chunks`). `all_gather`: every
/// member of the expert-parallel group gathers the group's tokens, slots and weights (the host reads the slots back
/// to lay out its experts' rows), computes the rows of its own experts, and a reduce-scatter sums each token's
/// weighted outputs back to its owner: every token reaches every member, in all-gathers and a reduce-scatter
/// instead of all-to-all(v)s of the routed rows. `deepep`: the all-to-all dispatcher's rows moved as DeepEP's normal
/// kernels move them (core::CollectiveAlgo::deepep): a token crosses the network once per node that takes it,
/// along its rail, and is forwarded over NVLink inside the node (deepep_dispatch.cpp estimates the per-node
/// tokens from the rows and the model's gate rule); dropless (counted dispatch), flat.
enum class Dispatcher { all_to_all, all_gather, deepep };
/// Dense (always active) parameters: plain data parallelism (replicated, all-reduce), ZeRO-2 (replicated fp16
/// parameters; gradients and optimizer states sharded over all ranks), or MoESys's ZeRO-3 (fp16 parameters and
/// gradients sharded inside the node and all-gathered over NVLink one layer ahead; optimizer states sharded over
/// all ranks, reduced hierarchically: node, then rail), or Megatron's distributed optimizer (gradients accumulate in
/// a full buffer through every micro-batch and are reduce-scattered once per step; optimizer states sharded; the
/// updated pieces all-gathered).
enum class DenseSharding { ddp, zero2, zero3, distributed };
/// Where expert states live: all on the GPU, host memory (ZeRO-Offload), or the SSD (ZeRO-Infinity / MoESys).
enum class Offload { none, cpu, nvme };
/// Which expert states are fetched one layer ahead: all of the layer's local experts (ZeRO-Infinity style,
/// routing-blind, no expert cache), or MoESys's 2D prefetch (experts the routing predicts, through an LFU cache).
enum class Prefetch { all_experts, routed };
/// Multi-task placement: one contiguous block of ranks per task, or GPUs per task from the measured load.
enum class Placement { static_blocks, elastic };
/// Token embedding: treated like every dense parameter, or column-partitioned over all ranks (three all-to-alls).
enum class Embedding { dense, partition };

/// The LFU-like CPU cache of expert states (used with offload = nvme and prefetch = routed).
struct CacheSettings {
  int hit_threshold = 2;    // hits an expert needs before it may take a cache entry from another
  double decay_beta = 0.5;  // every `decay_every_steps` steps all hit counts are multiplied by beta
  int decay_every_steps = 10;
  double capacity_gib = 0;       // per rank; 0 = the rank's share of host memory left after other host allocations
  double capacity_fraction = 0;  // > 0: room for this fraction of the rank's experts (overrides capacity_gib)
  bool operator==(const CacheSettings&) const = default;
};

struct TrainingPolicy {
  std::string preset;  // the preset this policy started from
  Gate gate = Gate::gshard;
  Dispatch dispatch = Dispatch::padded;
  AllToAll all_to_all = AllToAll::flat;
  Dispatcher dispatcher = Dispatcher::all_to_all;
  int overlap_chunks = 1;  // > 1: dispatch / expert FFN / combine pipelined in this many chunks on two streams
  DenseSharding dense = DenseSharding::zero2;
  double bucket_bytes = 0;    // fusion buffer for dense collectives; 0 = one collective per parameter tensor
  bool grad_overlap = false;  // gradient reduction overlapped with backward (else the host waits for it)
  Offload offload = Offload::none;
  Prefetch prefetch = Prefetch::all_experts;
  CacheSettings cache;
  Placement placement = Placement::static_blocks;
  Embedding embedding = Embedding::dense;
  ReplicaSettings replicas;  // spare expert slots holding copies of loaded experts (expert_replicas.hpp)
  bool operator==(const TrainingPolicy&) const = default;
};

/// A registered preset: what it stands for and its toggles.
struct PresetInfo {
  std::string description;
  TrainingPolicy policy;
};
std::map<std::string, PresetInfo>& preset_registry();
struct PresetRegistrar {
  PresetRegistrar(const std::string& name, std::string description, TrainingPolicy policy);
};
/// The preset's policy; throws ConfigError(file, path, "unknown preset 'x' (known: a, b, c)").
TrainingPolicy find_preset(const std::string& name, const std::string& file, const std::string& path);
std::string known_presets();

/// Parses {"preset": NAME, <toggle>: <value>, ...} (preset defaults to "moesys"). Errors name the toggle.
TrainingPolicy parse_policy(const nlohmann::json& j, const std::string& file, const std::string& base_path);
nlohmann::json to_json(const TrainingPolicy& p);
/// The `replicas` object over `r` ({"kind", "slots", "every", "scope"}); ConfigError at path.key on bad input.
ReplicaSettings parse_replicas(const nlohmann::json& j, ReplicaSettings r, const std::string& file,
                               const std::string& path);
/// The settings as JSON (scope only when it is not the default).
nlohmann::json replicas_json(const ReplicaSettings& r);
/// One line naming the preset and the toggles that differ from it, e.g. "deepspeed+all_to_all=hierarchical".
std::string describe(const TrainingPolicy& p);

const char* to_string(Gate v);
const char* to_string(Dispatch v);
const char* to_string(AllToAll v);
const char* to_string(Dispatcher v);
const char* to_string(DenseSharding v);
const char* to_string(Offload v);
const char* to_string(Prefetch v);
const char* to_string(Placement v);
const char* to_string(Embedding v);

}  // namespace moesys::policies::training
