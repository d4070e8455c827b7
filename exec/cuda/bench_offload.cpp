// Three ways to run L MoE layers whose expert weights may not fit in HBM, written against core::Runtime:
//   all_in_gpu     every layer's experts resident in HBM: the compute-only reference.
//   layer_offload  DeepSpeed-style: weights in pinned DRAM, two HBM layer buffers; layer i+1 is fetched while
//                  layer i computes (copy and compute overlap, but one late copy stalls the next layer).
//   ring_memory    MoESys: K HBM slots in a ring; layer i+K-1 is fetched as soon as layer i-1 has released its
//                  slot, so up to K-1 copies are in flight ahead of the compute.
// Every copy is a real H2D transfer from pinned memory on the H2D stream; the expert FFN (two batched GEMMs, bias
// omitted, GeLU) runs on the compute stream; events order the two.
#include "exec/cuda/bench_offload.hpp"

#include <chrono>
#include <vector>

#include "exec/model/ops.hpp"

namespace moesys::exec::cuda::bench {

namespace {

using core::Buffer;
using core::streams::kCompute;
using core::streams::kH2D;

struct Weights {
  Buffer w1, w2;
};

struct Bench {
  CudaRuntime& rt;
  const OffloadConfig& c;
  Buffer x, h, y;
  core::Event tail{};  // the last expert FFN of the previous pass: slots are free once it is done

  std::uint64_t w1_bytes() const { return std::uint64_t(c.experts) * c.hidden * c.ffn * 4; }
  Weights alloc_weights(core::Tier tier) {
    return {rt.alloc(tier, w1_bytes(), "experts"), rt.alloc(tier, w1_bytes(), "experts")};
  }
  core::Event expert_ffn(const Weights& w) {
    const std::int64_t R = c.rows, H = c.hidden, F = c.ffn, L = c.experts;
    rt.compute(kCompute, ops::gemm(R, F, H, x, w.w1, h, false, false, false, L), "expert:fc1");
    rt.compute(kCompute, ops::gelu(h, h, L * R * F), "expert:gelu");
    return rt.compute(kCompute, ops::gemm(R, H, F, h, w.w2, y, false, false, false, L), "expert:fc2");
  }
  core::Event fetch(const Weights& dst, const Weights& src) {
    rt.copy(kH2D, dst.w1, src.w1, w1_bytes());
    return rt.copy(kH2D, dst.w2, src.w2, w1_bytes());
  }
  // One inference pass through every layer, with `slots` HBM slots (0: weights resident, `resident` used).
  void pass(const std::vector<Weights>& host, const std::vector<Weights>& slot, const std::vector<Weights>& resident) {
    const int L = c.layers;
    if (slot.empty()) {
      for (int l = 0; l < L; ++l) expert_ffn(resident[std::size_t(l)]);
      return;
    }
    const int K = int(slot.size());
    rt.stream_wait(kH2D, tail);
    std::vector<core::Event> ready(static_cast<std::size_t>(L)), done(static_cast<std::size_t>(L));
    const int ahead = K - 1;  // layers in flight ahead of the compute
    for (int l = 0; l < std::min(L, ahead); ++l)
      ready[std::size_t(l)] = fetch(slot[std::size_t(l % K)], host[std::size_t(l)]);
    for (int l = 0; l < L; ++l) {
      const int next = l + ahead;
      if (next < L) {
        // The slot of layer `next` was last used by layer next - K = l - 1: wait for its compute to finish.
        if (next - K >= 0) rt.stream_wait(kH2D, done[std::size_t(next - K)]);
        ready[std::size_t(next)] = fetch(slot[std::size_t(next % K)], host[std::size_t(next)]);
      }
      rt.stream_wait(kCompute, ready[std::size_t(l)]);
      done[std::size_t(l)] = expert_ffn(slot[std::size_t(l % K)]);
    }
    tail = done[std::size_t(L - 1)];
  }
};

}  // namespace

nlohmann::json run_offload_benchmark(CudaRuntime& rt, const OffloadConfig& c) {
  Bench b{rt, c, {}, {}, {}};
  const std::int64_t L = c.experts;
  b.x = rt.alloc(core::Tier::hbm, std::uint64_t(L * c.rows * c.hidden) * 4, "activations");
  b.h = rt.alloc(core::Tier::hbm, std::uint64_t(L * c.rows * c.ffn) * 4, "activations");
  b.y = rt.alloc(core::Tier::hbm, std::uint64_t(L * c.rows * c.hidden) * 4, "activations");
  rt.compute(kCompute, ops::fill(b.x, L * c.rows * c.hidden, 0.01), "fill");
  std::vector<Weights> host;
  for (int l = 0; l < c.layers; ++l) host.push_back(b.alloc_weights(core::Tier::dram));  // pinned, zero-filled
  nlohmann::json out = nlohmann::json::object();
  const double layer_bytes = 2.0 * double(b.w1_bytes());
  const double flop = double(c.layers) * 2.0 * 2.0 * double(L * c.rows) * double(c.hidden) * double(c.ffn);
  struct Mode {
    const char* name;
    int slots;  // 0: resident
  };
  for (const Mode m : {Mode{"all_in_gpu", 0}, Mode{"layer_offload", 2}, Mode{"ring_memory", c.slots}}) {
    std::vector<Weights> resident, slots;
    if (m.slots == 0)
      for (int l = 0; l < c.layers; ++l) resident.push_back(b.alloc_weights(core::Tier::hbm));
    for (int k = 0; k < m.slots; ++k) slots.push_back(b.alloc_weights(core::Tier::hbm));
    const std::uint64_t hbm_weights = rt.memory().in_use_bytes(core::Tier::hbm);
    b.pass(host, slots, resident);  // warm-up: cuBLAS heuristics, stream creation
    rt.synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < c.iterations; ++i) b.pass(host, slots, resident);
    rt.synchronize();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / c.iterations;
    const double copied = m.slots == 0 ? 0.0 : layer_bytes * c.layers;
    out[m.name] = {{"slots", m.slots},
                   {"seconds_per_pass", s},
                   {"h2d_bytes_per_pass", copied},
                   {"expert_gemm_flop_per_s", flop / s},
                   {"hbm_bytes_in_use", hbm_weights}};
    for (auto& w : resident) rt.free(w.w1), rt.free(w.w2);
    for (auto& w : slots) rt.free(w.w1), rt.free(w.w2);
  }
  for (auto& w : host) rt.free(w.w1), rt.free(w.w2);
  rt.free(b.x), rt.free(b.h), rt.free(b.y);
  out["config"] = {{"layers", c.layers},
                   {"experts_per_layer", c.experts},
                   {"rows_per_expert", c.rows},
                   {"hidden", c.hidden},
                   {"ffn_hidden", c.ffn},
                   {"ring_slots", c.slots},
                   {"weight_bytes_per_layer", layer_bytes},
                   {"dtype", "fp32"}};
  return out;
}

}  // namespace moesys::exec::cuda::bench
