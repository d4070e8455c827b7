// CPU kernels of today's MoE architectures against naive references and finite differences: SwiGLU, RMSNorm,
// rotary positions, grouped-query attention (equal to multi-head attention with each K/V head repeated) and the
// embedding without a position table.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "exec/cpu/cpu_kernels.hpp"
#include "model/ops.hpp"
#include "model/tensors.hpp"

namespace moesys::exec::cpu {
namespace {

using I = std::int64_t;
using Floats = std::vector<float>;

core::Buffer view(Floats& v) {
  core::Buffer b;
  b.id = 1;
  b.bytes = v.size() * sizeof(float);
  b.data = v.data();
  return b;
}

/// d/dx_i of sum_j dy_j f(x)_j by central differences, in float (the kernels' precision).
Floats numeric_grad(Floats x, const Floats& dy, const std::function<Floats(Floats&)>& f) {
  Floats g(x.size());
  const float h = 1e-2f;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const float keep = x[i];
    x[i] = keep + h;
    const Floats up = f(x);
    x[i] = keep - h;
    const Floats down = f(x);
    x[i] = keep;
    double s = 0;
    for (std::size_t j = 0; j < dy.size(); ++j) s += double(dy[j]) * (double(up[j]) - double(down[j]));
    g[i] = static_cast<float>(s / (2.0 * h));
  }
  return g;
}

void expect_near(const Floats& got, const Floats& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], tol) << "element " << i;
}

TEST(CpuKernels, SwigluMatchesReferenceAndItsBackwardTheDerivative) {
  const I R = 3, f = 5;
  Floats x = model::normal_floats(R * 2 * f, 1.0, 21), dy = model::normal_floats(R * f, 1.0, 22);
  auto forward = [&](Floats& in) {
    Floats y(static_cast<std::size_t>(R * f));
    run_kernel(model::ops::swiglu(view(in), view(y), R, f));
    return y;
  };
  const Floats y = forward(x);
  for (I r = 0; r < R; ++r)
    for (I i = 0; i < f; ++i) {
      const double g = x[std::size_t(r * 2 * f + i)], u = x[std::size_t(r * 2 * f + f + i)];
      EXPECT_NEAR(y[std::size_t(r * f + i)], g / (1 + std::exp(-g)) * u, 1e-5);
    }
  Floats dx(x.size());
  run_kernel(model::ops::swiglu_bwd(view(x), view(dy), view(dx), R, f));
  expect_near(dx, numeric_grad(x, dy, forward), 2e-3);
}

TEST(CpuKernels, RmsnormMatchesReferenceAndItsBackwardTheDerivative) {
  const I T = 3, H = 6;
  Floats x = model::normal_floats(T * H, 1.0, 31), gamma = model::normal_floats(H, 1.0, 32);
  const Floats dy = model::normal_floats(T * H, 1.0, 33);
  Floats mean(T), rstd(T);
  auto forward = [&](Floats& in) {
    Floats y(in.size());
    run_kernel(model::ops::rmsnorm(view(in), view(gamma), view(y), view(mean), view(rstd), T, H));
    return y;
  };
  const Floats y = forward(x);
  for (I t = 0; t < T; ++t) {
    double ms = 0;
    for (I h = 0; h < H; ++h) ms += double(x[std::size_t(t * H + h)]) * x[std::size_t(t * H + h)];
    const double r = 1 / std::sqrt(ms / H + 1e-5);
    for (I h = 0; h < H; ++h) EXPECT_NEAR(y[std::size_t(t * H + h)], x[std::size_t(t * H + h)] * r * gamma[std::size_t(h)], 1e-5);
    EXPECT_EQ(mean[std::size_t(t)], 0.f);
  }
  Floats dx(x.size()), dgamma(H, 0.f);
  Floats dy_in = dy;
  run_kernel(model::ops::rmsnorm_bwd(view(x), view(gamma), view(mean), view(rstd), view(dy_in), view(dx),
                                     view(dgamma), T, H));
  forward(x);  // restore mean and rstd of x (the numeric gradient moved them)
  expect_near(dx, numeric_grad(x, dy, forward), 3e-3);
  Floats g0 = gamma;
  auto by_gamma = [&](Floats& g) {
    Floats out(x.size());
    run_kernel(model::ops::rmsnorm(view(x), view(g), view(out), view(mean), view(rstd), T, H));
    return out;
  };
  expect_near(dgamma, numeric_grad(g0, dy, by_gamma), 3e-3);
}

TEST(CpuKernels, RopeTurnsPairsAndItsInverseTurnsBack) {
  const I T = 5, Hh = 2, D = 8, S = 3;
  const Floats x0 = model::normal_floats(T * Hh * D, 1.0, 41);
  Floats x = x0;
  run_kernel(model::ops::rope(view(x), T, Hh, D, S, 2, false));
  // Token 4 sits at position 2 + 4 mod 3 = 3; its pair 1 of head 1 turns by 3 * 10000^(-2/8).
  const double angle = 3 * std::pow(10000.0, -2.0 / 8);
  const std::size_t at = (4 * Hh + 1) * D + 2;
  EXPECT_NEAR(x[at], x0[at] * std::cos(angle) - x0[at + 1] * std::sin(angle), 1e-5);
  EXPECT_NEAR(x[at + 1], x0[at] * std::sin(angle) + x0[at + 1] * std::cos(angle), 1e-5);
  run_kernel(model::ops::rope(view(x), T, Hh, D, S, 2, true));
  expect_near(x, x0, 1e-5);
}

TEST(CpuKernels, GroupedQueryAttentionIsAttentionWithRepeatedKvHeads) {
  const I B = 2, S = 6, H = 4, G = 2, D = 3, group = H / G;
  const I nq = B * S * H * D, nk = B * S * G * D;
  Floats q = model::normal_floats(nq, 1.0, 51), k = model::normal_floats(nk, 1.0, 52),
         v = model::normal_floats(nk, 1.0, 53), d_o = model::normal_floats(nq, 1.0, 54);
  auto repeat = [&](const Floats& kv) {  // [B*S][G*D] -> [B*S][H*D]
    Floats out(static_cast<std::size_t>(nq));
    for (I r = 0; r < B * S; ++r)
      for (I h = 0; h < H; ++h)
        for (I d = 0; d < D; ++d) out[std::size_t((r * H + h) * D + d)] = kv[std::size_t((r * G + h / group) * D + d)];
    return out;
  };
  Floats k_full = repeat(k), v_full = repeat(v), o(nq), o_full(nq);
  core::AttentionOp gqa = model::ops::attention(B, S, H, D, view(q), view(k), view(v), view(o));
  gqa.kv_heads = G;
  run_kernel(gqa);
  run_kernel(model::ops::attention(B, S, H, D, view(q), view(k_full), view(v_full), view(o_full)));
  expect_near(o, o_full, 1e-5);

  Floats dq(nq), dk(nk), dv(nk), dq_full(nq), dk_full(nq), dv_full(nq);
  core::AttentionOp back = model::ops::attention_bwd(B, S, H, D, view(q), view(k), view(v), view(o), view(d_o),
                                                     view(dq), view(dk), view(dv));
  back.kv_heads = G;
  run_kernel(back);
  run_kernel(model::ops::attention_bwd(B, S, H, D, view(q), view(k_full), view(v_full), view(o_full), view(d_o),
                                       view(dq_full), view(dk_full), view(dv_full)));
  expect_near(dq, dq_full, 1e-5);
  // A shared K/V head's gradient is the sum over the query heads that read it.
  Floats dk_sum(nk, 0.f), dv_sum(nk, 0.f);
  for (I r = 0; r < B * S; ++r)
    for (I h = 0; h < H; ++h)
      for (I d = 0; d < D; ++d) {
        dk_sum[std::size_t((r * G + h / group) * D + d)] += dk_full[std::size_t((r * H + h) * D + d)];
        dv_sum[std::size_t((r * G + h / group) * D + d)] += dv_full[std::size_t((r * H + h) * D + d)];
      }
  expect_near(dk, dk_sum, 1e-5);
  expect_near(dv, dv_sum, 1e-5);
}

TEST(CpuKernels, NarrowValueHeadsAreValuesPaddedWithZeros) {
  // MLA's attention: 5-wide query and key heads, 3-wide value heads. The reference pads V (and dO) to 5 columns
  // with zeros: its output's first 3 columns, dQ, dK and dV's first 3 columns must agree.
  const I B = 1, S = 4, H = 2, D = 5, Dv = 3, nq = B * S * H * D, nv = B * S * H * Dv;
  Floats q = model::normal_floats(nq, 1.0, 71), k = model::normal_floats(nq, 1.0, 72),
         v = model::normal_floats(nv, 1.0, 73), d_o = model::normal_floats(nv, 1.0, 74);
  auto pad = [&](const Floats& x) {
    Floats out(static_cast<std::size_t>(nq), 0.f);
    for (I r = 0; r < B * S * H; ++r)
      for (I c = 0; c < Dv; ++c) out[std::size_t(r * D + c)] = x[std::size_t(r * Dv + c)];
    return out;
  };
  auto narrow = [&](const Floats& x) {
    Floats out(static_cast<std::size_t>(nv));
    for (I r = 0; r < B * S * H; ++r)
      for (I c = 0; c < Dv; ++c) out[std::size_t(r * Dv + c)] = x[std::size_t(r * D + c)];
    return out;
  };
  Floats v_pad = pad(v), d_o_pad = pad(d_o), o(nv), o_pad(nq);
  core::AttentionOp op = model::ops::attention(B, S, H, D, view(q), view(k), view(v), view(o));
  op.v_head_dim = Dv;
  run_kernel(op);
  run_kernel(model::ops::attention(B, S, H, D, view(q), view(k), view(v_pad), view(o_pad)));
  expect_near(o, narrow(o_pad), 1e-5);
  Floats dq(nq), dk(nq), dv(nv), dq_pad(nq), dk_pad(nq), dv_pad(nq);
  core::AttentionOp back = model::ops::attention_bwd(B, S, H, D, view(q), view(k), view(v), view(o), view(d_o),
                                                     view(dq), view(dk), view(dv));
  back.v_head_dim = Dv;
  run_kernel(back);
  run_kernel(model::ops::attention_bwd(B, S, H, D, view(q), view(k), view(v_pad), view(o_pad), view(d_o_pad),
                                       view(dq_pad), view(dk_pad), view(dv_pad)));
  expect_near(dq, dq_pad, 1e-5);
  expect_near(dk, dk_pad, 1e-5);
  expect_near(dv, narrow(dv_pad), 1e-5);
}

TEST(CpuKernels, MlaKeysShareTheRotaryPartAndSumItsGradient) {
  const I T = 2, H = 3, dn = 2, dr = 2;
  Floats nope = model::normal_floats(T * H * dn, 1.0, 81), rope = model::normal_floats(T * dr, 1.0, 82);
  Floats k(T * H * (dn + dr));
  run_kernel(model::ops::mla_keys(view(nope), view(rope), view(k), T, H, dn, dr));
  for (I t = 0; t < T; ++t)
    for (I h = 0; h < H; ++h) {
      const float* row = k.data() + (t * H + h) * (dn + dr);
      EXPECT_EQ(row[0], nope[std::size_t((t * H + h) * dn)]);
      EXPECT_EQ(row[dn + 1], rope[std::size_t(t * dr + 1)]);
    }
  Floats d_nope(nope.size()), d_rope(rope.size());
  run_kernel(model::ops::mla_keys_bwd(view(k), view(d_nope), view(d_rope), T, H, dn, dr));
  expect_near(d_nope, nope, 0);
  for (std::size_t i = 0; i < rope.size(); ++i) EXPECT_FLOAT_EQ(d_rope[i], 3.f * rope[i]);
}

core::Buffer ints(std::vector<int>& v) {
  core::Buffer b;
  b.id = 4, b.bytes = v.size() * sizeof(int), b.data = v.data();
  return b;
}

TEST(CpuKernels, SigmoidGateSelectsWithItsBiasWithinTheBestGroups) {
  // 8 experts in 4 groups of 2; a token may use 2 groups. Group sums of the two best scores: group 0 has a strong
  // expert but a weak partner, groups 1 and 3 are strong in both, so they win; the bias moves expert 7 past 6 and 0.
  const I T = 1, E = 8, K = 2;
  Floats logits = {3.0f, -3.0f, 1.0f, 1.0f, -2.0f, -2.0f, 1.5f, 1.2f}, bias = {0, 0, 0, 0, 0, 0, 0, 0.2f};
  Floats probs(E), w(K);
  std::vector<int> experts(K), slots(K), counts(E);
  model::ops::GateRule rule;
  rule.sigmoid = true, rule.bias = view(bias), rule.groups = 4, rule.max_groups = 2;
  run_kernel(model::ops::gate_topk(view(logits), view(probs), ints(experts), ints(slots), view(w), ints(counts), T, E,
                                   K, 4, rule));
  auto sig = [](float x) { return 1.f / (1.f + std::exp(-x)); };
  EXPECT_EQ(experts, (std::vector<int>{7, 6}));  // expert 0 scores second, but its group is not chosen
  EXPECT_NEAR(w[0], sig(1.2f) / (sig(1.2f) + sig(1.5f)), 1e-6);  // weights: the scores without the bias
  EXPECT_NEAR(probs[0], sig(3.0f), 1e-6);
  // Without groups the two best selection scores win: expert 7 (0.769 + 0.2) and expert 0 (0.953).
  rule.max_groups = 0;
  run_kernel(model::ops::gate_topk(view(logits), view(probs), ints(experts), ints(slots), view(w), ints(counts), T, E,
                                   K, 4, rule));
  EXPECT_EQ(experts, (std::vector<int>{7, 0}));
}

TEST(CpuKernels, SigmoidGateBackwardIsTheDerivativeOfItsWeights) {
  const I T = 2, E = 6, K = 3;
  Floats logits = model::normal_floats(T * E, 1.0, 91), bias(E, 0.f), probs(T * E), w(T * K);
  const Floats dw = model::normal_floats(T * K, 1.0, 92);
  std::vector<int> experts(T * K), slots(T * K), counts(E);
  model::ops::GateRule rule;
  rule.sigmoid = true, rule.bias = view(bias);
  auto weights = [&](Floats& l) {
    run_kernel(model::ops::gate_topk(view(l), view(probs), ints(experts), ints(slots), view(w), ints(counts), T, E, K,
                                     T * K, rule));
    return w;
  };
  weights(logits);
  const std::vector<int> chosen = experts;
  Floats dl(T * E), dw_in = dw;
  run_kernel(model::ops::gate_bwd(view(probs), ints(experts), view(w), view(dw_in), view(dl), T, E, K, true));
  const Floats numeric = numeric_grad(logits, dw, weights);
  ASSERT_EQ(experts, chosen);  // the small steps did not change the choice
  expect_near(dl, numeric, 2e-3);
}

TEST(CpuKernels, EmbeddingWithoutPositionsIsTheTableRow) {
  const I T = 3, H = 4, V = 5;
  Floats table = model::normal_floats(V * H, 1.0, 61), x(T * H), dx = model::normal_floats(T * H, 1.0, 62),
         d_table(V * H, 0.f);
  std::vector<int> ids = {4, 0, 4};
  core::Buffer ib;
  ib.id = 3, ib.bytes = 12, ib.data = ids.data();
  run_kernel(model::ops::embedding_no_positions(ib, view(table), view(x), T, H, V));
  for (I t = 0; t < T; ++t)
    for (I h = 0; h < H; ++h) EXPECT_EQ(x[std::size_t(t * H + h)], table[std::size_t(ids[std::size_t(t)] * H + h)]);
  run_kernel(model::ops::embedding_bwd_no_positions(ib, view(dx), view(d_table), T, H, V));
  for (I h = 0; h < H; ++h) {
    EXPECT_FLOAT_EQ(d_table[std::size_t(4 * H + h)], dx[std::size_t(h)] + dx[std::size_t(2 * H + h)]);
    EXPECT_FLOAT_EQ(d_table[std::size_t(h)], dx[std::size_t(H + h)]);
    EXPECT_EQ(d_table[std::size_t(2 * H + h)], 0.f);
  }
}

}  // namespace
}  // namespace moesys::exec::cpu
