// CPU kernels against naive references. Attention: the training layout (seq_q == seq_kv, packed K/V) and the
// KV-cache layout of generation (queries are the last seq_q positions, K/V position-major with room for more).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/kernel_class.hpp"
#include "exec/cpu/cpu_kernels.hpp"
#include "exec/cpu/machine_probe.hpp"
#include "model/ops.hpp"
#include "model/tensors.hpp"

namespace moesys::exec::cpu {
namespace {

using I = std::int64_t;

core::Buffer view(std::vector<float>& v) {
  core::Buffer b;
  b.id = 1;
  b.bytes = v.size() * sizeof(float);
  b.data = v.data();
  return b;
}

// o[b, i] = softmax_j(q[b, i] . k[b, j] / sqrt(D)) v[b, j] per head over the keys query i sees, in double.
// kv(b, t) gives the row of position t of sequence b in k and v.
template <typename Row>
std::vector<float> reference(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v, I B,
                             I Sq, I Skv, I H, I D, Row kv) {
  const I ld = H * D;
  std::vector<float> o(static_cast<std::size_t>(B * Sq * ld));
  for (I b = 0; b < B; ++b)
    for (I h = 0; h < H; ++h)
      for (I i = 0; i < Sq; ++i) {
        const I visible = Skv - Sq + i + 1;
        std::vector<double> p(static_cast<std::size_t>(visible));
        double mx = -1e300, sum = 0;
        for (I j = 0; j < visible; ++j) {
          double s = 0;
          for (I d = 0; d < D; ++d)
            s += double(q[std::size_t((b * Sq + i) * ld + h * D + d)]) * k[std::size_t(kv(b, j) * ld + h * D + d)];
          p[std::size_t(j)] = s / std::sqrt(double(D));
          mx = std::max(mx, p[std::size_t(j)]);
        }
        for (auto& x : p) sum += (x = std::exp(x - mx));
        for (I d = 0; d < D; ++d) {
          double acc = 0;
          for (I j = 0; j < visible; ++j) acc += p[std::size_t(j)] / sum * v[std::size_t(kv(b, j) * ld + h * D + d)];
          o[std::size_t((b * Sq + i) * ld + h * D + d)] = static_cast<float>(acc);
        }
      }
  return o;
}

void expect_near(const std::vector<float>& got, const std::vector<float>& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], tol) << "element " << i;
}

TEST(CpuKernels, AttentionPackedMatchesReference) {
  const I B = 2, S = 7, H = 3, D = 4, n = B * S * H * D;
  auto q = model::normal_floats(n, 1.0, 1), k = model::normal_floats(n, 1.0, 2), v = model::normal_floats(n, 1.0, 3);
  std::vector<float> o(static_cast<std::size_t>(n));
  run_kernel(model::ops::attention(B, S, H, D, view(q), view(k), view(v), view(o)));
  expect_near(o, reference(q, k, v, B, S, S, H, D, [&](I b, I t) { return b * S + t; }), 1e-5);
}

TEST(CpuKernels, AttentionOverKvCacheMatchesReference) {
  // A cache with room for 9 positions of 3 sequences; the first Skv are filled, the rest hold garbage that the
  // kernel must not read.
  const I B = 3, C = 9, H = 2, D = 5, ld = H * D;
  auto kc = model::normal_floats(C * B * ld, 1.0, 4), vc = model::normal_floats(C * B * ld, 1.0, 5);
  const auto row = [&](I b, I t) { return t * B + b; };
  for (auto [Sq, Skv] : {std::pair<I, I>{1, 1}, {1, 6}, {4, 6}, {6, 6}, {2, 9}}) {
    auto q = model::normal_floats(B * Sq * ld, 1.0, std::uint64_t(10 + Sq * 31 + Skv));
    std::vector<float> o(q.size());
    auto k = kc, v = vc;
    for (I t = Skv; t < C; ++t)
      for (I x = 0; x < B * ld; ++x) k[std::size_t(t * B * ld + x)] = v[std::size_t(t * B * ld + x)] = NAN;
    run_kernel(model::ops::attention_cached(B, Sq, Skv, H, D, view(q), view(k), view(v), view(o)));
    SCOPED_TRACE("seq_q " + std::to_string(Sq) + " seq_kv " + std::to_string(Skv));
    expect_near(o, reference(q, k, v, B, Sq, Skv, H, D, row), 1e-5);
  }
}

TEST(CpuKernels, DecodeStepEqualsLastRowOfFullAttention) {
  // Generation's invariant: attending with one query over the cache gives the last row of causal attention over
  // the whole sequence.
  const I B = 2, S = 5, H = 2, D = 3, ld = H * D, n = B * S * ld;
  auto q = model::normal_floats(n, 1.0, 7), k = model::normal_floats(n, 1.0, 8), v = model::normal_floats(n, 1.0, 9);
  std::vector<float> full(static_cast<std::size_t>(n));
  run_kernel(model::ops::attention(B, S, H, D, view(q), view(k), view(v), view(full)));
  std::vector<float> kc(static_cast<std::size_t>(n)), vc(kc.size()), q1(static_cast<std::size_t>(B * ld)),
      o1(q1.size());
  for (I b = 0; b < B; ++b)
    for (I t = 0; t < S; ++t)
      for (I x = 0; x < ld; ++x) {
        kc[std::size_t((t * B + b) * ld + x)] = k[std::size_t((b * S + t) * ld + x)];
        vc[std::size_t((t * B + b) * ld + x)] = v[std::size_t((b * S + t) * ld + x)];
        if (t == S - 1) q1[std::size_t(b * ld + x)] = q[std::size_t((b * S + t) * ld + x)];
      }
  run_kernel(model::ops::attention_cached(B, 1, S, H, D, view(q1), view(kc), view(vc), view(o1)));
  for (I b = 0; b < B; ++b)
    for (I x = 0; x < ld; ++x)
      EXPECT_NEAR(o1[std::size_t(b * ld + x)], full[std::size_t((b * S + S - 1) * ld + x)], 1e-5);
}

TEST(CpuKernels, ChunkBackwardIsTheFullBackwardOfItsQueries) {
  // Context parallelism's invariant: the backward of the last Sq queries over position-major K and V equals the full
  // causal backward whose output gradient is zero for the earlier queries: the same d_k and d_v, and d_q of those rows.
  // With 4 query heads over 2 K/V heads, each K/V gradient sums its group's heads.
  const I B = 2, S = 6, Sq = 2, H = 4, Hk = 2, D = 3, ld = H * D, ldk = Hk * D, n = B * S * ld, nk = B * S * ldk;
  auto q = model::normal_floats(n, 1.0, 11), k = model::normal_floats(nk, 1.0, 12), v = model::normal_floats(nk, 1.0, 13);
  auto d_o = model::normal_floats(n, 1.0, 14);
  for (I b = 0; b < B; ++b)
    for (I t = 0; t < S - Sq; ++t)
      for (I x = 0; x < ld; ++x) d_o[std::size_t((b * S + t) * ld + x)] = 0.f;
  std::vector<float> o(static_cast<std::size_t>(n)), dq(o.size()), dk(static_cast<std::size_t>(nk)), dv(dk.size());
  core::AttentionOp full = model::ops::attention_bwd(B, S, H, D, view(q), view(k), view(v), view(o), view(d_o),
                                                     view(dq), view(dk), view(dv));
  full.kv_heads = Hk;
  core::AttentionOp forward = full;
  forward.backward = false;
  run_kernel(forward);
  run_kernel(full);
  // The chunk: its queries and output gradient sequence-major, K and V (and their gradients) position-major.
  std::vector<float> qc(static_cast<std::size_t>(B * Sq * ld)), doc(qc.size()), oc(qc.size()), dqc(qc.size());
  std::vector<float> kp(static_cast<std::size_t>(nk)), vp(kp.size()), dkp(kp.size(), 0.f), dvp(kp.size(), 0.f);
  for (I b = 0; b < B; ++b)
    for (I t = 0; t < S; ++t) {
      for (I x = 0; x < ldk; ++x) {
        kp[std::size_t((t * B + b) * ldk + x)] = k[std::size_t((b * S + t) * ldk + x)];
        vp[std::size_t((t * B + b) * ldk + x)] = v[std::size_t((b * S + t) * ldk + x)];
      }
      for (I x = 0; x < ld && t >= S - Sq; ++x) {
        qc[std::size_t((b * Sq + t - (S - Sq)) * ld + x)] = q[std::size_t((b * S + t) * ld + x)];
        doc[std::size_t((b * Sq + t - (S - Sq)) * ld + x)] = d_o[std::size_t((b * S + t) * ld + x)];
      }
    }
  core::AttentionOp back = model::ops::attention_cached(B, Sq, S, H, D, view(qc), view(kp), view(vp), view(oc));
  back.kv_heads = Hk;
  back.backward = true;
  back.d_o = view(doc), back.d_q = view(dqc), back.d_k = view(dkp), back.d_v = view(dvp);
  run_kernel(back);
  for (I b = 0; b < B; ++b)
    for (I t = 0; t < S; ++t) {
      for (I x = 0; x < ldk; ++x) {
        EXPECT_NEAR(dkp[std::size_t((t * B + b) * ldk + x)], dk[std::size_t((b * S + t) * ldk + x)], 1e-5);
        EXPECT_NEAR(dvp[std::size_t((t * B + b) * ldk + x)], dv[std::size_t((b * S + t) * ldk + x)], 1e-5);
      }
      for (I x = 0; x < ld && t >= S - Sq; ++x)
        EXPECT_NEAR(dqc[std::size_t((b * Sq + t - (S - Sq)) * ld + x)], dq[std::size_t((b * S + t) * ld + x)], 1e-5);
    }
  // accumulate_kv_grads (zigzag context parallelism's second block) adds to d_k and d_v instead of writing them:
  // the same kernel again doubles them, grouped heads included, and writes d_q as before.
  const std::vector<float> dk_once = dkp, dv_once = dvp, dq_once = dqc;
  back.accumulate_kv_grads = true;
  run_kernel(back);
  for (std::size_t i = 0; i < dkp.size(); ++i) {
    EXPECT_NEAR(dkp[i], 2 * dk_once[i], 1e-5);
    EXPECT_NEAR(dvp[i], 2 * dv_once[i], 1e-5);
  }
  for (std::size_t i = 0; i < dqc.size(); ++i) EXPECT_NEAR(dqc[i], dq_once[i], 1e-6);
}

TEST(CpuKernels, AttentionRejectsMoreQueriesThanKeys) {
  std::vector<float> x(64);
  EXPECT_THROW(run_kernel(model::ops::attention_cached(1, 3, 2, 1, 4, view(x), view(x), view(x), view(x))),
               std::invalid_argument);
}

TEST(CpuKernels, ArgmaxTakesTheFirstOfEqualMaxima) {
  std::vector<float> x = {0.1f, 3.f, -1.f, 3.f, /**/ -5.f, -4.f, -6.f, -4.5f};
  std::vector<int> ids(2, -1);
  core::Buffer out;
  out.id = 2, out.bytes = 8, out.data = ids.data();
  run_kernel(model::ops::argmax(view(x), out, 2, 4));
  EXPECT_EQ(ids, (std::vector<int>{1, 1}));
}

TEST(CpuKernels, ScatterAddRowsIsTheBackwardOfGatherRows) {
  // Rows 0 and 2 of x go to row 1 of y, row 1 to row 0, row 3 (index -1) nowhere: y accumulates.
  std::vector<float> x = {1, 2, /**/ 3, 4, /**/ 5, 6, /**/ 7, 8}, y = {10, 10, /**/ 20, 20};
  std::vector<int> idx = {1, 0, 1, -1};
  core::Buffer ib;
  ib.id = 3, ib.bytes = 16, ib.data = idx.data();
  run_kernel(model::ops::scatter_add_rows(view(x), ib, view(y), 4, 2, 2));
  EXPECT_EQ(y, (std::vector<float>{13, 14, 26, 28}));
  idx[3] = 2;  // past the rows of y
  EXPECT_THROW(run_kernel(model::ops::scatter_add_rows(view(x), ib, view(y), 4, 2, 2)), std::invalid_argument);
}

// The machine probe's operands: floats like a program's (libm's exp and tanh have fast paths near 0), indices 0.
template <typename T>
core::Buffer buffer_of(std::vector<T>& v, std::uint64_t id) {
  core::Buffer b;
  b.id = id;
  b.bytes = v.size() * sizeof(T);
  b.data = v.data();
  return b;
}

bool like_a_program(float x) { return std::fabs(x) >= 0.05f && std::fabs(x) <= 2.0f; }

TEST(CpuKernels, ProbeOperandsHoldValuesButValidIndices) {
  const I T = 16, V = 64;
  std::vector<float> logits(T * V), d_logits(T * V, 7), loss(1, 7);
  std::vector<std::int32_t> targets(T, 123456);  // out of range until the fill
  core::Kernel k = model::ops::softmax_xent(buffer_of(logits, 1), buffer_of(targets, 2), buffer_of(d_logits, 3),
                                            buffer_of(loss, 4), T, V, 1.0);
  fill_probe_operands(k);
  for (float x : logits) ASSERT_TRUE(like_a_program(x)) << x;
  for (std::int32_t t : targets) ASSERT_EQ(t, 0);
  EXPECT_GT(std::count_if(logits.begin(), logits.end(), [](float x) { return x < 0; }), T * V / 4);  // both signs
  run_kernel(k);
  EXPECT_TRUE(std::isfinite(loss[0]));
  EXPECT_GT(loss[0], 0);

  // Dispatch reads slots: zeros; the send buffer it writes gets values.
  std::vector<float> x(T * 8), send(4 * 8, 7);
  std::vector<std::int32_t> slots(T, -5);
  core::Kernel d = model::ops::dispatch(buffer_of(x, 5), buffer_of(slots, 6), buffer_of(send, 7), T, 8, 1, 4);
  fill_probe_operands(d);
  for (std::int32_t s : slots) ASSERT_EQ(s, 0);
  for (float v : send) ASSERT_TRUE(like_a_program(v));
  run_kernel(d);
}

TEST(CpuKernels, ProbeSecondMomentsAreNonNegative) {
  // AdamW takes the square root of v: negative values would send it down libm's error path.
  std::vector<float> grad(512), param(512), m(512), v(512);
  core::Kernel k = model::ops::adamw(buffer_of(grad, 1), buffer_of(param, 2), buffer_of(m, 3), buffer_of(v, 4), 512,
                                     1e-3, 0.9, 0.999, 1e-8, 0.01, 1);
  fill_probe_operands(k);
  for (float x : v) ASSERT_GE(x, 0.05f);
  EXPECT_LT(*std::min_element(m.begin(), m.end()), 0);  // the others keep both signs
  run_kernel(k);
  for (float p : param) ASSERT_TRUE(std::isfinite(p));
}

TEST(CpuKernels, ProbeRefillsWhatAnInPlaceKernelWrites) {
  // A scale by 1/2 in place: refilled before each call, its operand never drifts towards denormals.
  std::vector<float> x(256);
  core::Kernel k = model::ops::scale(buffer_of(x, 1), 256, 0.5);
  fill_probe_operands(k);
  const std::vector<float> filled = x;
  for (int call = 0; call < 300; ++call) {
    fill_probe_operands(k, true);
    run_kernel(k);
  }
  for (std::size_t i = 0; i < x.size(); ++i) ASSERT_EQ(x[i], filled[i] * 0.5f);
}

TEST(CpuKernels, ProbeMeasuresEveryClassColdAndHotAndTheMachineCarriesBoth) {
  // Sizes only: the probe places the operands in its own memory.
  auto sized = [](std::uint64_t id, std::uint64_t bytes) {
    core::Buffer b;
    b.id = id, b.bytes = bytes;
    return b;
  };
  const I n = 128;
  const std::vector<core::Kernel> samples = {
      model::ops::gemm(n, n, n, sized(1, n * n * 4), sized(2, n * n * 4), sized(3, n * n * 4)),
      model::ops::gelu(sized(4, 65536 * 4), sized(5, 65536 * 4), 65536)};
  const KernelRates k = probe_kernel_rates(samples, 0);
  ASSERT_EQ(k.rates.size(), 2u);
  EXPECT_GT(k.cache_bytes, 0);
  for (const core::Kernel& s : samples) {
    const std::string name = core::kernel_class(s);
    const double work = core::kernel_work(s);
    const double cold = k.rates.at(name).at(work), hot = k.hot_rates.at(name).at(work);
    EXPECT_GT(cold, 0) << name;
    EXPECT_GE(hot, cold) << name;  // never slower on operands in cache
  }
  MachineRates r;
  r.gemm_flop_per_s = r.copy_bytes_per_s = 1e10;
  r.all_to_all_bytes_per_s = r.ssd_read_bytes_per_s = r.ssd_write_bytes_per_s = 1e9;
  r.kernels = k;
  core::Calibration cal;
  const core::ClusterSpec c = cluster_from_rates(r, ProbeShape{}, cal);
  EXPECT_NEAR(c.node.gpu.kernel_cache_bytes, k.cache_bytes, 1.0);
  // MPI moves a message between ranks as one: none of NCCL's per-peer channel bounds or chunk ramps.
  EXPECT_EQ(cal.p2p_channel_bytes_per_s, 0);
  EXPECT_EQ(cal.p2p_half_bandwidth_bytes, 0);
  for (const auto& [name, curve] : k.hot_rates)
    for (const auto& [work, rate] : curve)
      EXPECT_NEAR(core::rate_at(c.node.gpu.kernel_hot_rates.at(name), work), rate, rate * 1e-9) << name;
}

}  // namespace
}  // namespace moesys::exec::cpu
