#pragma once
// Inference memory policies: where the weights live and how they reach the GPU. A policy is a decision, not code
// that moves memory: it sets the toggles of the one generation program (policies/training/generation.cpp), whose
// expert-residency manager and dense-unit fetches do the copies, and it explains, with the numbers, why its
// weights cannot fit when the program's memory plan (its allocations run on the ledger) overflows the GPU.
//
//   all-in-gpu  every weight resident in HBM: the reference and upper bound, when the model fits.
//   deepspeed   ZeRO-Inference: the decoder layers' weights (dense units and experts) at home in host memory,
//               fetched at most one layer ahead into two GPU buffers; pageable or pinned host memory.
//   moesys      ring memory: dense weights resident, the experts of MoE layers streamed through K GPU slots; a
//               slot is released when its layer has computed and refilled with the next layer of the ring.
#include <functional>
#include <string>

#include "policies/inference/config.hpp"
#include "policies/inference/sizes.hpp"
#include "policies/training/training_plan.hpp"

namespace moesys::policies::inference {

struct PolicyInfo {
  std::string name;
  std::string summary;
  /// Sets where the program keeps the weights: offload of the experts (training policy) and the generation's
  /// residency strategy, slots, dense units from host, pageable copies.
  std::function<void(const InferenceConfig&, training::TrainingPolicy&, training::GenerationPlan&)> configure;
  /// Called when the weights alone (`hbm_weights`, from the program's ledger) leave no room in `hbm_bytes`: throws
  /// core::InfeasibleError saying which of the policy's units does not fit. Returns if it has nothing to add.
  std::function<void(const WeightSizes&, const InferenceConfig&, double hbm_weights, double hbm_bytes)> explain;
};

const PolicyInfo* find_policy(const std::string& name);
/// "all-in-gpu, deepspeed, moesys"
std::string policy_names();
/// Throws core::ConfigError("", "policy", "unknown policy ... (known: ...)") for an unknown name.
const PolicyInfo& policy_info(const std::string& name);

struct PolicyRegistrar {
  explicit PolicyRegistrar(PolicyInfo info);
};

}  // namespace moesys::policies::inference
