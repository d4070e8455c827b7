// deepspeed: ZeRO-Inference style layer offload, the paper's inference baseline. All decoder-layer weights (dense
// and experts) live in host memory; the embeddings stay on the GPU (in both offloading policies, so the
// comparison is about the layers). When the host reaches layer l it fetches l if it is not there yet and
// prefetches l+1 - never further - into the other of two GPU layer buffers; a buffer is overwritten only after
// the layer that used it has computed. Like ZeRO-3's prefetcher, which follows the module order of one forward
// pass, it does not prefetch across passes: layer 0 is fetched on demand at every new token.
//
// Pageable host memory cannot be DMA'd: the CUDA driver first copies it into a pinned staging buffer with the
// CPU, then DMAs the staging buffer, chunk by chunk, serially on the copy stream. Serial chunks take as long as
// one host copy of the whole layer followed by one DMA, so the simulation issues those two operations per layer
// (and accounts a layer-sized staging buffer). The host copy moves 2 bytes of host-memory traffic per byte (read
// and write) at the node's memory bandwidth - an optimistic figure, since one driver thread reaches less.
#include <map>

#include "core/error.hpp"
#include "policies/inference/policies.hpp"

namespace moesys::policies::inference {
namespace {

class DeepSpeedOffload final : public WeightPolicy {
 public:
  Footprint footprint(const WeightSizes& w, const InferenceConfig& c) const override {
    const std::uint64_t layers = w.dense_bytes() - w.embedding_bytes + w.expert_bytes();
    const std::uint64_t staging = c.host_memory == HostMemory::pageable ? w.max_layer_bytes() : 0;
    return Footprint{w.embedding_bytes + 2 * w.max_layer_bytes(), layers, staging, layers};
  }

  void check_fits(const WeightSizes& w, const InferenceConfig&, double hbm_bytes) const override {
    const double resident = static_cast<double>(w.embedding_bytes), layer = static_cast<double>(w.max_layer_bytes());
    if (resident + layer > hbm_bytes)
      throw core::InfeasibleError("deepspeed: a single decoder layer does not fit: its weights need " + gib(layer) +
                                  " plus " + gib(resident) + " of resident embeddings, but a GPU has " +
                                  gib(hbm_bytes) + " of HBM");
    if (resident + 2 * layer > hbm_bytes)
      throw core::InfeasibleError("deepspeed: fetching one layer ahead needs 2 layer buffers of " + gib(layer) +
                                  " plus " + gib(resident) + " of resident embeddings = " + gib(resident + 2 * layer) +
                                  ", more than the GPU's " + gib(hbm_bytes) + " of HBM");
  }

  void setup(core::Runtime& rt, const WeightSizes& w, const InferenceConfig& c, int) override {
    sizes_ = w;
    pageable_ = c.host_memory == HostMemory::pageable;
    const Footprint f = footprint(w, c);
    resident_ = rt.alloc(core::Tier::hbm, w.embedding_bytes, "resident weights");
    for (auto& b : buffer_) b = rt.alloc(core::Tier::hbm, w.max_layer_bytes(), "layer buffers");
    host_ = rt.alloc(core::Tier::dram, f.host_weights, pageable_ ? "weights (pageable)" : "weights (pinned)");
    if (pageable_) staging_ = rt.alloc(core::Tier::dram, f.host_staging, "pinned staging");
  }

  LayerReady acquire(core::Runtime& rt, int pass, int layer) override {
    const long long g = global(pass, layer);
    if (!fetched_.count(g)) fetch(rt, g);  // on demand: the first layer of a pass
    if (layer + 1 < sizes_.layers() && !fetched_.count(g + 1)) fetch(rt, g + 1);
    const core::Event ready = fetched_.at(g);
    return {ready, ready};
  }

  void release(core::Runtime&, int pass, int layer, core::Event done) override {
    const long long g = global(pass, layer);
    fetched_.erase(g);
    done_[g] = done;
    done_.erase(g - 2);
  }

  void teardown(core::Runtime& rt) override {
    for (auto& b : buffer_) rt.free(b);
    rt.free(resident_);
    rt.free(host_);
    rt.free(staging_);
  }

 private:
  long long global(int pass, int layer) const { return static_cast<long long>(pass) * sizes_.layers() + layer; }

  void fetch(core::Runtime& rt, long long g) {
    const std::uint64_t bytes = sizes_.layer_bytes(static_cast<int>(g % sizes_.layers()));
    const core::Buffer& dst = buffer_[static_cast<std::size_t>(g % 2)];
    // The buffer still holds layer g-2 until that layer's kernels have finished.
    if (auto it = done_.find(g - 2); it != done_.end()) rt.stream_wait(core::streams::kH2D, it->second);
    if (pageable_) {
      rt.copy(core::streams::kH2D, staging_, host_, bytes);  // CPU copy into pinned memory (host -> host)
      fetched_[g] = h2d(rt, dst, staging_, bytes);
    } else {
      fetched_[g] = h2d(rt, dst, host_, bytes);
    }
  }

  WeightSizes sizes_;
  bool pageable_ = false;
  core::Buffer resident_, host_, staging_;
  core::Buffer buffer_[2];
  std::map<long long, core::Event> fetched_;  // global layer -> event of its copy into a layer buffer
  std::map<long long, core::Event> done_;     // global layer -> its last kernel, for the buffer's next occupant
};

const PolicyRegistrar kRegistrar("deepspeed",
                                 "ZeRO-Inference layer offload: whole layers fetched one ahead (pageable or pinned)",
                                 [] { return std::make_unique<DeepSpeedOffload>(); });

}  // namespace
}  // namespace moesys::policies::inference
