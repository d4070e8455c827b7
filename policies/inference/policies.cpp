#include "policies/inference/policies.hpp"

#include <cmath>
#include <map>

#include "core/error.hpp"

namespace moesys::policies::inference {

namespace {
std::map<std::string, PolicyInfo>& registry() {
  static std::map<std::string, PolicyInfo> policies;
  return policies;
}
}  // namespace

PolicyRegistrar::PolicyRegistrar(PolicyInfo info) {
  const std::string name = info.name;
  registry()[name] = std::move(info);
}

const PolicyInfo* find_policy(const std::string& name) {
  auto it = registry().find(name);
  return it == registry().end() ? nullptr : &it->second;
}

std::string policy_names() {
  std::string names;
  for (const auto& [name, info] : registry()) names += (names.empty() ? "" : ", ") + name;
  return names;
}

const PolicyInfo& policy_info(const std::string& name) {
  const PolicyInfo* info = find_policy(name);
  if (!info) throw core::ConfigError("", "policy", "unknown policy \"" + name + "\" (known: " + policy_names() + ")");
  return *info;
}

namespace {

// all-in-gpu: every weight resident in HBM (loaded when the server started); nothing moves over PCIe while
// serving, so it bounds what any offloading policy can reach, and it needs the whole model to fit.
const PolicyRegistrar kAllInGpu(
    {"all-in-gpu", "every weight resident in GPU memory (reference, upper bound)",
     [](const InferenceConfig&, training::TrainingPolicy& p, training::GenerationPlan&) {
       p.offload = training::Offload::none;
     },
     [](const WeightSizes& w, const InferenceConfig& c, double hbm_weights, double hbm_bytes) {
       throw core::InfeasibleError(
           "all-in-gpu: the weights of " + c.model.name + " need " + gib(hbm_weights) + " per GPU (dense " +
           gib(static_cast<double>(w.dense_bytes())) + " + " + std::to_string(c.experts_per_gpu()) + " experts x " +
           std::to_string(w.moe_layers()) + " layers " + gib(static_cast<double>(w.expert_bytes())) +
           ") but a GPU has " + gib(hbm_bytes) + " of HBM; use more GPUs or an offloading policy (moesys, deepspeed)");
     }});

// moesys ring memory (paper-notes, "Ring memory offloading"): the experts of every MoE layer in pinned host memory,
// K GPU slots used as a ring over the generation's layer order (it wraps into the next pass, so the copy engine
// never waits for the host to start a new token); fixed slots, no allocation while serving.
const PolicyRegistrar kRing(
    {"moesys", "ring memory: experts streamed through K GPU slots, refilled as layers finish",
     [](const InferenceConfig& c, training::TrainingPolicy& p, training::GenerationPlan& g) {
       p.offload = training::Offload::cpu;
       g.ring = true;
       g.slots = c.ring_slots;
     },
     [](const WeightSizes& w, const InferenceConfig& c, double hbm_weights, double hbm_bytes) {
       const double slot = static_cast<double>(w.layer_expert_bytes);
       const double resident = hbm_weights - c.ring_slots * slot;  // the dense weights (the ledger's, less the slots)
       if (resident + slot > hbm_bytes)
         throw core::InfeasibleError("moesys: a single MoE layer does not fit: its " +
                                     std::to_string(c.experts_per_gpu()) + " experts need a " + gib(slot) +
                                     " slot, plus " + gib(resident) + " of resident dense weights, but a GPU has " +
                                     gib(hbm_bytes) + " of HBM");
       const auto most = static_cast<long long>(std::floor((hbm_bytes - resident) / slot));
       throw core::InfeasibleError("moesys: K = " + std::to_string(c.ring_slots) + " ring slots of " + gib(slot) +
                                   " plus " + gib(resident) + " of dense weights need " + gib(hbm_weights) +
                                   " but a GPU has " + gib(hbm_bytes) + " of HBM; at most K = " + std::to_string(most) +
                                   " slots fit");
     }});

// deepspeed: ZeRO-Inference, the paper's inference baseline. Every decoder layer's weights (its dense unit and its
// experts) live in host memory and are fetched at most one layer ahead into two GPU buffers; the embeddings stay on
// the GPU (in both offloading policies, so the comparison is about the layers). Pageable host memory cannot be
// DMA'd: each fetch is a host copy into pinned staging, then the DMA, serially on the copy stream.
const PolicyRegistrar kDeepSpeed(
    {"deepspeed", "ZeRO-Inference layer offload: whole layers fetched one ahead (pageable or pinned)",
     [](const InferenceConfig& c, training::TrainingPolicy& p, training::GenerationPlan& g) {
       p.offload = training::Offload::cpu;
       g.ring = false;
       g.slots = 2;
       g.dense_from_host = true;
       g.pageable = c.host_memory == HostMemory::pageable;
     },
     [](const WeightSizes& w, const InferenceConfig&, double hbm_weights, double hbm_bytes) {
       const double layer = static_cast<double>(w.max_layer_bytes());
       const double resident = hbm_weights - 2 * layer;  // the embeddings (the ledger's, less the layer buffers)
       if (resident + layer > hbm_bytes)
         throw core::InfeasibleError("deepspeed: a single decoder layer does not fit: its weights need " + gib(layer) +
                                     " plus " + gib(resident) + " of resident embeddings, but a GPU has " +
                                     gib(hbm_bytes) + " of HBM");
       throw core::InfeasibleError("deepspeed: fetching one layer ahead needs 2 layer buffers of " + gib(layer) +
                                   " plus " + gib(resident) + " of resident embeddings = " + gib(hbm_weights) +
                                   ", more than the GPU's " + gib(hbm_bytes) + " of HBM");
     }});

}  // namespace
}  // namespace moesys::policies::inference
