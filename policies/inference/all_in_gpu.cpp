// all-in-gpu: the reference. Every weight is resident in HBM (loaded when the server started), nothing moves
// over PCIe while serving; it bounds what any offloading policy can reach and needs the whole model to fit.
#include "core/error.hpp"
#include "policies/inference/policies.hpp"

namespace moesys::policies::inference {
namespace {

class AllInGpu final : public WeightPolicy {
 public:
  Footprint footprint(const WeightSizes& w, const InferenceConfig&) const override {
    return Footprint{w.dense_bytes() + w.expert_bytes(), 0, 0, 0};
  }

  void check_fits(const WeightSizes& w, const InferenceConfig& c, double hbm_bytes) const override {
    const double need = static_cast<double>(footprint(w, c).hbm_weights);
    if (need > hbm_bytes)
      throw core::InfeasibleError(
          "all-in-gpu: the weights of " + c.model.name + " need " + gib(need) + " per GPU (dense " +
          gib(static_cast<double>(w.dense_bytes())) + " + " + std::to_string(c.experts_per_gpu()) + " experts x " +
          std::to_string(w.moe_layers()) + " layers " + gib(static_cast<double>(w.expert_bytes())) +
          ") but a GPU has " + gib(hbm_bytes) + " of HBM; use more GPUs or an offloading policy (moesys, deepspeed)");
  }

  void setup(core::Runtime& rt, const WeightSizes& w, const InferenceConfig& c, int) override {
    weights_ = rt.alloc(core::Tier::hbm, footprint(w, c).hbm_weights, "weights");
  }
  LayerReady acquire(core::Runtime&, int, int) override { return {}; }
  void release(core::Runtime&, int, int, core::Event) override {}
  void teardown(core::Runtime& rt) override { rt.free(weights_); }

 private:
  core::Buffer weights_;
};

const PolicyRegistrar kRegistrar("all-in-gpu", "every weight resident in GPU memory (reference, upper bound)",
                                 [] { return std::make_unique<AllInGpu>(); });

}  // namespace
}  // namespace moesys::policies::inference
