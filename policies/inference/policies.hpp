#pragma once
// Inference memory policies: where weights live and when they are copied to the GPU. A policy is a per-rank
// object the generation program asks, layer by layer, for the event after which the layer's weights are on
// the GPU (acquire), and tells when the layer's last kernel using them has been issued (release).
//
//   all-in-gpu  every weight resident in HBM: the reference and upper bound, when the model fits.
//   deepspeed   ZeRO-Inference: every decoder layer's weights (dense and experts) fetched from host memory,
//               at most one layer ahead, into two GPU layer buffers; pageable or pinned host memory.
//   moesys      ring memory: dense weights resident, experts of MoE layers streamed through K fixed GPU slots;
//               a slot is released when its layer has computed and refilled with layer i+K on the H2D stream.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/runtime.hpp"
#include "policies/inference/config.hpp"
#include "policies/inference/sizes.hpp"

namespace moesys::policies::inference {

/// Events after which a layer's weights are usable on the GPU (0 = already there).
struct LayerReady {
  core::Event dense;    // attention, layernorms, gate (and a dense FFN)
  core::Event experts;  // the rank's experts of an MoE layer
};

/// What a policy keeps where, per rank (bytes), and what it moves over PCIe per forward pass in steady state.
struct Footprint {
  std::uint64_t hbm_weights = 0;   // resident weights plus slots or layer buffers
  std::uint64_t host_weights = 0;  // weights kept in host memory
  std::uint64_t host_staging = 0;  // pinned staging buffer for pageable copies
  std::uint64_t h2d_bytes_per_pass = 0;
};

class WeightPolicy {
 public:
  virtual ~WeightPolicy() = default;

  virtual Footprint footprint(const WeightSizes& w, const InferenceConfig& c) const = 0;
  /// Throws core::InfeasibleError, with the numbers, if the policy's weights cannot fit in `hbm_bytes`.
  virtual void check_fits(const WeightSizes& w, const InferenceConfig& c, double hbm_bytes) const = 0;

  /// Allocates the policy's memory and issues the copies needed before the first layer. `passes` is the number
  /// of forward passes the program will run, so that nothing is prefetched past the last one.
  virtual void setup(core::Runtime& rt, const WeightSizes& w, const InferenceConfig& c, int passes) = 0;
  virtual LayerReady acquire(core::Runtime& rt, int pass, int layer) = 0;
  /// `done` completes when the last kernel that reads the layer's weights has finished.
  virtual void release(core::Runtime& rt, int pass, int layer, core::Event done) = 0;
  virtual void teardown(core::Runtime& rt) = 0;

  /// Bytes copied host -> device so far (over PCIe; staging copies inside host memory are not counted).
  std::uint64_t h2d_bytes() const { return h2d_bytes_; }

 protected:
  core::Event h2d(core::Runtime& rt, const core::Buffer& dst, const core::Buffer& src, std::uint64_t bytes) {
    h2d_bytes_ += bytes;
    return rt.copy(core::streams::kH2D, dst, src, bytes);
  }

 private:
  std::uint64_t h2d_bytes_ = 0;
};

struct PolicyInfo {
  std::string name;
  std::string summary;
  std::function<std::unique_ptr<WeightPolicy>()> make;
};

const PolicyInfo* find_policy(const std::string& name);
/// "all-in-gpu, deepspeed, moesys"
std::string policy_names();
/// Throws core::ConfigError("", "policy", "unknown policy ... (known: ...)") for an unknown name.
std::unique_ptr<WeightPolicy> make_policy(const std::string& name);

struct PolicyRegistrar {
  PolicyRegistrar(std::string name, std::string summary, std::function<std::unique_ptr<WeightPolicy>()> make);
};

}  // namespace moesys::policies::inference
