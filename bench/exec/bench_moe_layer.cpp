// Issue 5 item 6 on the CPU runtime (one process, no mpirun): the MoE layer's forward + backward, split by its own
// trace spans, against raw cblas_sgemm calls on the expert FFN's exact shapes.
//
// Counters (all from the same iterations, so background load hits both sides alike):
//   expert_ffn_vs_blas   raw GEMM time / time of every "expert:*" kernel (GEMMs, bias, GeLU and their backward):
//                        the expert FFN's rate as a fraction of the BLAS GEMM rate. Target >= 0.80.
//   expert_gemm_vs_blas  raw GEMM time / time of the runtime's expert GEMM kernels alone (dispatch overhead).
//   dispatch_combine_share  "dispatch:*" + "combine:*" kernels (permutations, regroups, weighted sum and their
//                        backward) / MoE layer time (forward + backward). Target <= 0.15.
//   a2a_share            the all-to-all calls / layer time (one rank: MPI's self-copy).
//   gate_share           gate logits, softmax/top-k and their backward / layer time.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "bench_exec_util.hpp"
#include "exec/model/moe_layer.hpp"
#include "exec/model/tensors.hpp"

namespace moesys::bench_exec {
namespace {

using clock = std::chrono::steady_clock;
double since(clock::time_point t) {
  return std::chrono::duration<double>(clock::now() - t).count();
}
bool starts(const std::string& s, const char* p) {
  return s.rfind(p, 0) == 0;
}

// The expert GEMMs of MoeLayer::forward and ::backward (exec/model/moe_layer.cpp), batch `L` each, on matrices
// of the same sizes, called directly.
struct RawGemms {
  struct Shape {
    int m, n, k;
    bool ta, tb;
  };
  std::vector<Shape> shapes;
  int L;
  std::vector<float> a, b, c;
  RawGemms(int L_, int R, int H, int F) : L(L_) {
    shapes = {{R, F, H, false, false}, {R, H, F, false, false},  // fc1, fc2
              {F, H, R, true, false},  {R, F, H, false, true},   // fc2 wgrad, dgrad
              {H, F, R, true, false},  {R, H, F, false, true}};  // fc1 wgrad, dgrad
    const std::size_t big = std::size_t(L) * std::max({R * F, R * H, H * F});
    a.assign(big, 0.01f), b.assign(big, 0.02f), c.assign(big, 0.f);
  }
  double flop() const {
    double f = 0;
    for (const auto& s : shapes) f += 2.0 * s.m * s.n * s.k * L;
    return f;
  }
  void run() {
    for (const auto& s : shapes)
      for (int g = 0; g < L; ++g) {
        const std::size_t oa = std::size_t(g) * s.m * s.k, ob = std::size_t(g) * s.k * s.n;
        cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans, s.m, s.n, s.k,
                    1.f, a.data() + oa, s.ta ? s.m : s.k, b.data() + ob, s.tb ? s.k : s.n, 0.f,
                    c.data() + std::size_t(g) * s.m * s.n, s.n);
      }
  }
};

// Args: hidden, tokens per rank, experts (ffn = 4 * hidden, top-2, capacity factor 1.25).
void BM_MoeLayerVsBlas(benchmark::State& state) {
  auto rt = make_runtime();
  exec::model::MoeLayerConfig c;
  c.hidden = state.range(0), c.ffn_hidden = 4 * state.range(0), c.tokens = state.range(1);
  c.experts = int(state.range(2)), c.top_k = 2, c.capacity_factor = 1.25;
  exec::model::MoeLayer layer(*rt, core::Group::world(1), c, 7, "moe");
  const std::int64_t TH = c.tokens * c.hidden;
  auto x = rt->alloc(core::Tier::hbm, exec::model::f32_bytes(TH), "bench");
  auto out = rt->alloc(core::Tier::hbm, exec::model::f32_bytes(TH), "bench");
  auto dx = rt->alloc(core::Tier::hbm, exec::model::f32_bytes(TH), "bench");
  auto xs = exec::model::normal_floats(TH, 1.0, 3);
  exec::model::upload(*rt, x, xs.data(), exec::model::f32_bytes(TH));
  RawGemms raw(layer.local_experts(), int(layer.capacity()), int(c.hidden), int(c.ffn_hidden));

  double layer_s = 0, raw_s = 0, expert_s = 0, gemm_s = 0, permute_s = 0, a2a_s = 0, gate_s = 0, gemm_flop = 0;
  for (auto _ : state) {
    rt->clear_spans();
    const auto t = clock::now();
    layer.forward(x, out);
    layer.backward(out, dx);  // d_out = out: any gradient exercises the same kernels
    rt->synchronize();
    const double it = since(t);
    layer_s += it;
    state.SetIterationTime(it);
    for (const auto& s : rt->spans()) {
      const double d = s.end_s - s.start_s;
      if (starts(s.name, "expert:")) {
        expert_s += d;
        if (starts(s.name, "expert:fc")) gemm_s += d, gemm_flop += s.flop;
      } else if (starts(s.name, "dispatch:") || starts(s.name, "combine:")) {
        permute_s += d;
      } else if (starts(s.name, "all_to_all")) {
        a2a_s += d;
      } else if (starts(s.name, "gate:")) {
        gate_s += d;
      }
    }
    const auto t2 = clock::now();
    raw.run();
    raw_s += since(t2);
  }
  if (gemm_flop != raw.flop() * double(state.iterations()))
    state.SkipWithError("the layer's expert GEMMs differ from the raw GEMM list: update RawGemms");
  state.counters["expert_ffn_vs_blas"] = raw_s / expert_s;
  state.counters["expert_gemm_vs_blas"] = raw_s / gemm_s;
  state.counters["dispatch_combine_share"] = permute_s / layer_s;
  state.counters["a2a_share"] = a2a_s / layer_s;
  state.counters["gate_share"] = gate_s / layer_s;
  state.counters["blas_GFLOPs"] = gemm_flop / raw_s * 1e-9;
  state.counters["expert_ffn_GFLOPs"] = gemm_flop / expert_s * 1e-9;
  for (auto* b : {&x, &out, &dx}) rt->free(*b);
}
BENCHMARK(BM_MoeLayerVsBlas)
    ->Args({1024, 256, 4})
    ->Args({1024, 512, 8})
    ->Args({256, 512, 8})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2.0);

}  // namespace
}  // namespace moesys::bench_exec
