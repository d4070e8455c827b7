// moesys ring memory offloading (paper-notes, "Ring memory offloading"). Dense weights stay in HBM; the experts
// of all MoE layers live in pinned host memory and pass through K fixed GPU slots used as a ring. MoE layers are
// numbered globally over the forward passes (g = pass * M + m), and g occupies slot g mod K. Slots start with
// g = 0..K-1; when g's expert kernels have finished its slot is released and refilled with g + K on the H2D
// stream ("calculation-released-load"), which wraps into the next pass: the copy engine never waits for the host
// to start a new token. Fixed slots mean no allocation (and no fragmentation) while serving.
#include <algorithm>
#include <map>

#include "core/error.hpp"
#include "policies/inference/policies.hpp"

namespace moesys::policies::inference {
namespace {

class RingMemory final : public WeightPolicy {
 public:
  Footprint footprint(const WeightSizes& w, const InferenceConfig& c) const override {
    const auto k = static_cast<std::uint64_t>(c.ring_slots);
    // With K = M every MoE layer keeps its slot: after the first pass nothing moves.
    const bool streaming = c.ring_slots < w.moe_layers();
    return Footprint{w.dense_bytes() + k * w.layer_expert_bytes, w.expert_bytes(), 0, streaming ? w.expert_bytes() : 0};
  }

  void check_fits(const WeightSizes& w, const InferenceConfig& c, double hbm_bytes) const override {
    const double dense = static_cast<double>(w.dense_bytes()), slot = static_cast<double>(w.layer_expert_bytes);
    if (dense + slot > hbm_bytes)
      throw core::InfeasibleError("moesys: a single MoE layer does not fit: its " +
                                  std::to_string(c.experts_per_gpu()) + " experts need a " + gib(slot) +
                                  " slot, plus " + gib(dense) + " of resident dense weights, but a GPU has " +
                                  gib(hbm_bytes) + " of HBM");
    const double need = dense + c.ring_slots * slot;
    if (need > hbm_bytes) {
      const auto most = static_cast<long long>((hbm_bytes - dense) / slot);
      throw core::InfeasibleError("moesys: K = " + std::to_string(c.ring_slots) + " ring slots of " + gib(slot) +
                                  " plus " + gib(dense) + " of dense weights need " + gib(need) + " but a GPU has " +
                                  gib(hbm_bytes) + " of HBM; at most K = " + std::to_string(most) + " slots fit");
    }
  }

  void setup(core::Runtime& rt, const WeightSizes& w, const InferenceConfig& c, int passes) override {
    slots_ = c.ring_slots;
    moe_layers_ = w.moe_layers();
    last_ = static_cast<long long>(passes) * moe_layers_;
    bytes_ = w.layer_expert_bytes;
    moe_index_ = w.moe_index;
    dense_ = rt.alloc(core::Tier::hbm, w.dense_bytes(), "dense weights");
    host_ = rt.alloc(core::Tier::dram, w.expert_bytes(), "experts (pinned)");
    for (int s = 0; s < slots_; ++s) slot_.push_back(rt.alloc(core::Tier::hbm, bytes_, "ring slots"));
    for (long long g = 0; g < std::min<long long>(slots_, last_); ++g) load(rt, g);
  }

  LayerReady acquire(core::Runtime&, int pass, int layer) override {
    const int m = moe_of(layer);
    if (m < 0) return {};
    return {core::Event{}, loaded_.at(global(pass, m))};
  }

  void release(core::Runtime& rt, int pass, int layer, core::Event done) override {
    const int m = moe_of(layer);
    if (m < 0) return;
    const long long g = global(pass, m);
    loaded_.erase(g);
    const long long next = g + slots_;
    if (next >= last_) return;
    if (slots_ == moe_layers_) {
      loaded_[next] = core::Event{};  // same layer, same slot: already there
      return;
    }
    rt.stream_wait(core::streams::kH2D, done);  // the slot is free only once its layer has computed
    load(rt, next);
  }

  void teardown(core::Runtime& rt) override {
    for (auto& s : slot_) rt.free(s);
    rt.free(dense_);
    rt.free(host_);
  }

 private:
  int moe_of(int layer) const { return moe_index_[static_cast<std::size_t>(layer)]; }
  long long global(int pass, int m) const { return static_cast<long long>(pass) * moe_layers_ + m; }
  void load(core::Runtime& rt, long long g) {
    loaded_[g] = h2d(rt, slot_[static_cast<std::size_t>(g % slots_)], host_, bytes_);
  }

  int slots_ = 0, moe_layers_ = 0;
  long long last_ = 0;
  std::uint64_t bytes_ = 0;
  std::vector<int> moe_index_;
  core::Buffer dense_, host_;
  std::vector<core::Buffer> slot_;
  std::map<long long, core::Event> loaded_;  // global MoE layer -> event of its load into its slot
};

const PolicyRegistrar kRegistrar("moesys", "ring memory: experts streamed through K GPU slots from pinned memory",
                                 [] { return std::make_unique<RingMemory>(); });

}  // namespace
}  // namespace moesys::policies::inference
