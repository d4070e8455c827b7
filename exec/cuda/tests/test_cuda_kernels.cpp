// Every kernel the model uses, on the CUDA runtime and on the CPU runtime with the same inputs: the results must
// agree within floating-point tolerance (exactly for integer outputs: routing decisions, slots, counts).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>

#include "exec/cuda/tests/cuda_test_util.hpp"
#include "model/ops.hpp"
#include "model/tensors.hpp"

namespace moesys::exec::cuda {

namespace ops = moesys::model::ops;
namespace {

using I = std::int64_t;

struct Tensor {  // host data of one operand: floats, ints, or raw 16-bit words
  std::vector<float> f;
  std::vector<int> i;
  std::vector<std::uint16_t> h;
  std::size_t bytes() const { return f.size() * 4 + i.size() * 4 + h.size() * 2; }
  const void* data() const {
    return !f.empty() ? (const void*)f.data() : !i.empty() ? (const void*)i.data() : (const void*)h.data();
  }
  void* data() { return const_cast<void*>(static_cast<const Tensor*>(this)->data()); }
};
Tensor F(std::vector<float> v) {
  return Tensor{std::move(v), {}, {}};
}
Tensor N(std::vector<int> v) {
  return Tensor{{}, std::move(v), {}};
}
Tensor randn(I n, std::uint64_t seed, double sd = 1.0) {
  return F(model::normal_floats(n, sd, seed));
}
Tensor zeros(I n) {
  return F(std::vector<float>(std::size_t(n), 0.f));
}
Tensor izeros(I n) {
  return N(std::vector<int>(std::size_t(n), 0));
}

using Make = std::function<core::Kernel(const std::vector<core::Buffer>&)>;

std::vector<Tensor> run(core::Runtime& rt, std::vector<Tensor> ts, const Make& make) {
  std::vector<core::Buffer> b;
  for (auto& t : ts) {
    b.push_back(rt.alloc(core::Tier::hbm, std::max<std::size_t>(t.bytes(), 4), "test"));
    model::upload(rt, b.back(), t.data(), t.bytes());
  }
  rt.wait(rt.compute(core::streams::kCompute, make(b), "kernel under test"));
  rt.synchronize();
  for (std::size_t k = 0; k < ts.size(); ++k) {
    model::download(rt, b[k], ts[k].data(), ts[k].bytes());
    rt.free(b[k]);
  }
  return ts;
}

float bf16_to_float(std::uint16_t h) {
  const std::uint32_t bits = std::uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Runs on both runtimes; every float within atol + rel * |cpu|, every int equal. `gpu_out` gets the GPU's tensors.
void check(const std::vector<Tensor>& ts, const Make& make, double rel = 1e-5, double atol = 1e-6,
           std::vector<Tensor>* gpu_out = nullptr) {
  const auto c = run(testing::host(), ts, make);
  const auto g = run(testing::gpu(), ts, make);
  for (std::size_t k = 0; k < ts.size(); ++k) {
    ASSERT_EQ(c[k].i, g[k].i) << "integer operand " << k;
    for (std::size_t j = 0; j < c[k].f.size(); ++j)
      ASSERT_NEAR(c[k].f[j], g[k].f[j], atol + rel * std::fabs(c[k].f[j])) << "operand " << k << " element " << j;
  }
  if (gpu_out) *gpu_out = g;
}

TEST(CudaKernels, GemmAllTransposesBatchedAccumulate) {
  const I m = 33, n = 17, k = 29, batch = 3;
  for (int t = 0; t < 4; ++t) {
    const bool ta = t & 1, tb = t & 2;
    check(
        {randn(batch * m * k, 1), randn(batch * k * n, 2), randn(batch * m * n, 3)},
        [&](const auto& b) { return ops::gemm(m, n, k, b[0], b[1], b[2], ta, tb, true, batch); }, 1e-4, 1e-4);
  }
}

TEST(CudaKernels, GemmBf16AccumulatesInFp32) {
  const I m = 64, n = 48, k = 96;
  auto round = [](const std::vector<float>& v) {  // to bf16, nearest even
    std::vector<std::uint16_t> h(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) {
      std::uint32_t u;
      std::memcpy(&u, &v[i], 4);
      h[i] = std::uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
    return h;
  };
  const auto a = round(model::normal_floats(m * k, 1, 4)), b = round(model::normal_floats(k * n, 1, 5));
  auto widen = [](const std::vector<std::uint16_t>& h) {
    std::vector<float> f(h.size());
    std::transform(h.begin(), h.end(), f.begin(), bf16_to_float);
    return f;
  };
  const auto ref = run(testing::host(), {F(widen(a)), F(widen(b)), zeros(m * n)},
                       [&](const auto& x) { return ops::gemm(m, n, k, x[0], x[1], x[2]); });
  const auto got = run(
      testing::gpu(),
      {Tensor{{}, {}, a}, Tensor{{}, {}, b}, Tensor{{}, {}, std::vector<std::uint16_t>(std::size_t(m * n))}},
      [&](const auto& x) { return ops::gemm(m, n, k, x[0], x[1], x[2], false, false, false, 1, core::Dtype::bf16); });
  for (std::size_t j = 0; j < std::size_t(m * n); ++j)
    ASSERT_NEAR(ref[2].f[j], bf16_to_float(got[2].h[j]), 0.02 + 0.01 * std::fabs(ref[2].f[j])) << j;
}

TEST(CudaKernels, GateTopkCapacityMatchesCpu) {
  struct Case {
    I T, E, K, C;
  };
  for (const Case c : {Case{300, 16, 2, 30}, Case{1500, 64, 2, 40}, Case{257, 8, 1, 40}, Case{100, 200, 4, 3}}) {
    std::vector<Tensor> g;
    check(
        {randn(c.T * c.E, 7, 2.0), zeros(c.T * c.E), izeros(c.T * c.K), izeros(c.T * c.K), zeros(c.T * c.K),
         izeros(c.E)},
        [&](const auto& b) { return ops::gate_topk(b[0], b[1], b[2], b[3], b[4], b[5], c.T, c.E, c.K, c.C); }, 1e-5,
        1e-6, &g);
    ASSERT_EQ(g.size(), 6u);
    EXPECT_TRUE(std::count(g[3].i.begin(), g[3].i.end(), -1) > 0) << "the case should drop tokens";
  }
}

TEST(CudaKernels, GateBackward) {
  const I T = 200, E = 16, K = 2;
  std::vector<int> experts(std::size_t(T * K));
  std::mt19937 gen(3);
  for (I t = 0; t < T; ++t) {
    experts[std::size_t(t * K)] = int(gen() % E);
    experts[std::size_t(t * K + 1)] = int((experts[std::size_t(t * K)] + 1 + gen() % (E - 1)) % E);
  }
  auto probs = model::normal_floats(T * E, 1, 8);
  for (auto& p : probs) p = std::fabs(p) / 4;
  check({F(probs), N(experts), randn(T * K, 9), randn(T * K, 10), zeros(T * E)},
        [&](const auto& b) { return ops::gate_bwd(b[0], b[1], b[2], b[3], b[4], T, E, K); });
}

// Slots of T*K choices into S = E*C slots: a random injective assignment, every fifth choice dropped.
std::vector<int> random_slots(I T, I K, I S, unsigned seed) {
  std::vector<int> perm(static_cast<std::size_t>(S));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937(seed));
  std::vector<int> slots(std::size_t(T * K));
  for (I i = 0; i < T * K; ++i) slots[std::size_t(i)] = i % 5 == 4 ? -1 : perm[std::size_t(i)];
  return slots;
}

TEST(CudaKernels, DispatchCombineAndBackward) {
  const I T = 96, H = 40, K = 2, S = 8 * 30;
  const auto slots = random_slots(T, K, S, 11);
  check({randn(T * H, 12), N(slots), randn(S * H, 13)},
        [&](const auto& b) { return ops::dispatch(b[0], b[1], b[2], T, H, K, S); });
  check({randn(S * H, 14), N(slots), zeros(T * H)},
        [&](const auto& b) { return ops::dispatch_bwd(b[0], b[1], b[2], T, H, K, S); });
  check({randn(S * H, 15), N(slots), randn(T * K, 16), zeros(T * H)},
        [&](const auto& b) { return ops::combine(b[0], b[1], b[2], b[3], T, H, K, S); });
  check(
      {randn(T * H, 17), randn(S * H, 18), N(slots), randn(T * K, 19), randn(S * H, 20), randn(T * K, 21)},
      [&](const auto& b) { return ops::combine_bwd(b[0], b[1], b[2], b[3], b[4], b[5], T, H, K, S); }, 1e-5, 1e-5);
}

TEST(CudaKernels, ElementwiseAndBias) {
  const I G = 3, M = 50, Nn = 70, n = G * M * Nn;
  check({randn(n, 1), zeros(n)}, [&](const auto& b) { return ops::block_transpose(b[0], b[1], 5, 6, 7 * 10); });
  check({randn(n, 2), randn(G * Nn, 3)}, [&](const auto& b) { return ops::add_bias(b[0], b[1], G, M, Nn); });
  check({randn(n, 4), randn(G * Nn, 5)}, [&](const auto& b) { return ops::bias_grad(b[0], b[1], G, M, Nn, true); });
  check({randn(n, 6, 3.0), zeros(n)}, [&](const auto& b) { return ops::gelu(b[0], b[1], n); });
  check({randn(n, 7, 3.0), randn(n, 8), zeros(n)}, [&](const auto& b) { return ops::gelu_bwd(b[0], b[1], b[2], n); });
  check({randn(n, 9), randn(n, 10), zeros(n)}, [&](const auto& b) { return ops::add(b[0], b[1], b[2], n); });
  check({randn(n, 11)}, [&](const auto& b) { return ops::scale(b[0], n, 0.37); });
  check({randn(n, 12)}, [&](const auto& b) { return ops::fill(b[0], n, -2.5); });
  auto g = randn(n, 13), p = randn(n, 14), m = randn(n, 15), v = randn(n, 16);
  for (auto& x : v.f) x = x * x;
  check({g, p, m, v},
        [&](const auto& b) { return ops::adamw(b[0], b[1], b[2], b[3], n, 1e-3, 0.9, 0.999, 1e-8, 0.01, 7); });
}

TEST(CudaKernels, LayernormEmbeddingLoss) {
  const I T = 64, H = 96, V = 50, S = 16;
  check(
      {randn(T * H, 1, 2.0), randn(H, 2), randn(H, 3), zeros(T * H), zeros(T), zeros(T)},
      [&](const auto& b) { return ops::layernorm(b[0], b[1], b[2], b[3], b[4], b[5], T, H); }, 1e-5, 1e-5);
  auto mean = randn(T, 4, 0.1), rstd = randn(T, 5, 0.2);
  for (auto& r : rstd.f) r = 1.f + std::fabs(r);
  check(
      {randn(T * H, 6), randn(H, 7), mean, rstd, randn(T * H, 8), zeros(T * H), randn(H, 9), randn(H, 10)},
      [&](const auto& b) { return ops::layernorm_bwd(b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], T, H); }, 1e-4,
      1e-5);
  std::vector<int> ids(static_cast<std::size_t>(T)), targets(static_cast<std::size_t>(T));
  for (I t = 0; t < T; ++t) ids[std::size_t(t)] = int((t * 7) % V), targets[std::size_t(t)] = int((t * 13 + 5) % V);
  check({N(ids), randn(V * H, 11), randn(S * H, 12), zeros(T * H)},
        [&](const auto& b) { return ops::embedding(b[0], b[1], b[2], b[3], T, H, V, S); });
  check({N(ids), randn(T * H, 13), randn(V * H, 14), randn(S * H, 15)},
        [&](const auto& b) { return ops::embedding_bwd(b[0], b[1], b[2], b[3], T, H, V, S); });
  check({randn(T * H, 17), N(ids), randn(V * H, 18)},
        [&](const auto& b) { return ops::scatter_add_rows(b[0], b[1], b[2], T, H, V); });
  check(
      {randn(T * V, 16, 3.0), N(targets), zeros(T * V), zeros(1)},
      [&](const auto& b) { return ops::softmax_xent(b[0], b[1], b[2], b[3], T, V, 1.0 / double(T)); }, 1e-5, 1e-6);
}

TEST(CudaKernels, BadTokenIdIsReported) {
  auto& rt = testing::gpu();
  auto ids = rt.alloc(core::Tier::hbm, 8, "t"), tab = rt.alloc(core::Tier::hbm, 64, "t"),
       x = rt.alloc(core::Tier::hbm, 64, "t");
  const int bad[2] = {1, 99};
  model::upload(rt, ids, bad, 8);
  rt.compute(core::streams::kCompute, ops::embedding(ids, tab, tab, x, 2, 4, 4, 2), "embedding");
  EXPECT_THROW(rt.synchronize(), std::invalid_argument);
  rt.free(ids), rt.free(tab), rt.free(x);
}

TEST(CudaKernels, AttentionForwardBackward) {
  const I B = 2, S = 24, heads = 3, D = 8, n = B * S * heads * D;
  check(
      {randn(n, 1), randn(n, 2), randn(n, 3), zeros(n)},
      [&](const auto& b) { return ops::attention(B, S, heads, D, b[0], b[1], b[2], b[3]); }, 1e-4, 1e-5);
  check(
      {randn(n, 1), randn(n, 2), randn(n, 3), zeros(n), randn(n, 4), zeros(n), zeros(n), zeros(n)},
      [&](const auto& b) { return ops::attention_bwd(B, S, heads, D, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]); },
      1e-4, 1e-5);
}

// Today's architectures: SwiGLU, rotary positions (whole heads, and MLA's rotary part of a head), RMSNorm, the
// embedding without positions, grouped-query attention, value heads narrower than keys, MLA's key assembly.
TEST(CudaKernels, TodaysArchitectureKernels) {
  const I R = 37, f = 24, T = 20, H = 64, V = 50;
  check({randn(R * 2 * f, 1, 2.0), zeros(R * f)}, [&](const auto& b) { return ops::swiglu(b[0], b[1], R, f); });
  check({randn(R * 2 * f, 2, 2.0), randn(R * f, 3), zeros(R * 2 * f)},
        [&](const auto& b) { return ops::swiglu_bwd(b[0], b[1], b[2], R, f); }, 1e-4, 1e-6);
  check({randn(T * 4 * 16, 4)}, [&](const auto& b) { return ops::rope(b[0], T, 4, 16, 7, 3, false); }, 1e-5, 1e-6);
  check({randn(T * 4 * 24, 5)},
        [&](const auto& b) { return ops::rope(b[0], T, 4, 8, 7, 0, true, 10000.0, 24, 16); }, 1e-5, 1e-6);
  check({randn(T * H, 6, 2.0), randn(H, 7), zeros(T * H), zeros(T), zeros(T)},
        [&](const auto& b) { return ops::rmsnorm(b[0], b[1], b[2], b[3], b[4], T, H); }, 1e-5, 1e-5);
  auto rstd = randn(T, 8, 0.2);
  for (auto& r : rstd.f) r = 1.f + std::fabs(r);
  check({randn(T * H, 9), randn(H, 10), zeros(T), rstd, randn(T * H, 11), zeros(T * H), randn(H, 12)},
        [&](const auto& b) { return ops::rmsnorm_bwd(b[0], b[1], b[2], b[3], b[4], b[5], b[6], T, H); }, 1e-4, 1e-5);
  std::vector<int> ids(static_cast<std::size_t>(T));
  for (I t = 0; t < T; ++t) ids[std::size_t(t)] = int((t * 7) % V);
  check({N(ids), randn(V * H, 13), zeros(T * H)},
        [&](const auto& b) { return ops::embedding_no_positions(b[0], b[1], b[2], T, H, V); });
  check({N(ids), randn(T * H, 14), randn(V * H, 15)},
        [&](const auto& b) { return ops::embedding_bwd_no_positions(b[0], b[1], b[2], T, H, V); });
  check({randn(T * 3 * 6, 16), randn(T * 4, 17), zeros(T * 3 * 10)},
        [&](const auto& b) { return ops::mla_keys(b[0], b[1], b[2], T, 3, 6, 4); });
  check({randn(T * 3 * 10, 18), zeros(T * 3 * 6), zeros(T * 4)},
        [&](const auto& b) { return ops::mla_keys_bwd(b[0], b[1], b[2], T, 3, 6, 4); });
}

TEST(CudaKernels, GroupedQueryAndNarrowValueAttention) {
  const I B = 2, S = 12, heads = 4, D = 8;
  struct Case {
    I kv_heads, v_dim;
  };
  for (const Case c : {Case{2, 8}, Case{1, 8}, Case{4, 5}}) {
    const I nq = B * S * heads * D, nk = B * S * c.kv_heads * D, nv = B * S * c.kv_heads * c.v_dim,
             no = B * S * heads * c.v_dim;
    auto op = [&](const auto& b, bool backward) {
      core::AttentionOp a = backward ? ops::attention_bwd(B, S, heads, D, b[0], b[1], b[2], b[3], b[4], b[5], b[6],
                                                          b[7])
                                     : ops::attention(B, S, heads, D, b[0], b[1], b[2], b[3]);
      a.kv_heads = c.kv_heads, a.v_head_dim = c.v_dim;
      return a;
    };
    check({randn(nq, 1), randn(nk, 2), randn(nv, 3), zeros(no)}, [&](const auto& b) { return op(b, false); }, 1e-4,
          1e-5);
    check({randn(nq, 1), randn(nk, 2), randn(nv, 3), randn(no, 4), randn(no, 5), zeros(nq), zeros(nk), zeros(nv)},
          [&](const auto& b) { return op(b, true); }, 1e-4, 1e-5);
  }
}

TEST(CudaKernels, SigmoidGateWithGroupsMatchesCpu) {
  const I T = 300, E = 64, K = 8, C = 60;
  ops::GateRule rule;
  rule.sigmoid = true, rule.groups = 8, rule.max_groups = 4;
  check({randn(T * E, 21, 2.0), zeros(T * E), izeros(T * K), izeros(T * K), zeros(T * K), izeros(E), randn(E, 22, 0.05)},
        [&](const auto& b) {
          rule.bias = b[6];
          return ops::gate_topk(b[0], b[1], b[2], b[3], b[4], b[5], T, E, K, C, rule);
        });
  std::vector<int> experts(std::size_t(T * K));
  for (I i = 0; i < T * K; ++i) experts[std::size_t(i)] = int((i * 5 + i / K) % E);
  auto probs = model::normal_floats(T * E, 1, 23);
  for (auto& p : probs) p = 1.f / (1.f + std::exp(-p));
  check({F(probs), N(experts), randn(T * K, 24), randn(T * K, 25), zeros(T * E)},
        [&](const auto& b) { return ops::gate_bwd(b[0], b[1], b[2], b[3], b[4], T, E, K, true); });
}

TEST(CudaKernels, AttentionOverKvCache) {
  // Queries are the last positions of a position-major cache with room for 10 positions: a decode step and a
  // prefill continuing a context.
  const I B = 3, C = 10, heads = 2, D = 8, ld = heads * D;
  for (auto [Sq, Skv] : {std::pair<I, I>{1, 7}, {4, 9}}) {
    check(
        {randn(B * Sq * ld, 11), randn(C * B * ld, 12), randn(C * B * ld, 13), zeros(B * Sq * ld)},
        [&](const auto& b) { return ops::attention_cached(B, Sq, Skv, heads, D, b[0], b[1], b[2], b[3]); }, 1e-4,
        1e-5);
  }
}

TEST(CudaKernels, ArgmaxTakesTheFirstOfEqualMaxima) {
  std::vector<float> x = model::normal_floats(5 * 77, 1.0, 21);
  x[2 * 77 + 10] = x[2 * 77 + 40] = 9.f;  // a tie: the lower column wins on both runtimes
  check({F(x), izeros(5)}, [&](const auto& b) { return ops::argmax(b[0], b[1], 5, 77); }, 0, 0);
}

}  // namespace
}  // namespace moesys::exec::cuda
