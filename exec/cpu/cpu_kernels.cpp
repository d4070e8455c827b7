#include "exec/cpu/cpu_kernels.hpp"

#include <cblas.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace moesys::exec::cpu {

namespace {

using I = std::int64_t;
using core::TensorOp;
using core::TensorOpKind;

float* F(const core::Buffer& b) { return static_cast<float*>(b.data); }
int* N(const core::Buffer& b) { return static_cast<int*>(b.data); }
std::size_t Z(I v) { return static_cast<std::size_t>(v); }

void need(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument("cpu kernel: " + what);
}

void run_gemm(const core::GemmOp& g) {
  need(g.dtype == core::Dtype::fp32, "GEMM dtype must be fp32 on the CPU runtime");
  need(g.a.data && g.b.data && g.c.data, "GEMM operands have no host data");
  const I lda = g.trans_a ? g.m : g.k, ldb = g.trans_b ? g.k : g.n;
  const I sb = g.stride_b > 0 ? g.stride_b : g.k * g.n, sc = g.stride_c > 0 ? g.stride_c : g.m * g.n;
  for (I b = 0; b < g.batch; ++b)
    cblas_sgemm(CblasRowMajor, g.trans_a ? CblasTrans : CblasNoTrans, g.trans_b ? CblasTrans : CblasNoTrans,
                static_cast<int>(g.m), static_cast<int>(g.n), static_cast<int>(g.k), 1.0f, F(g.a) + (g.broadcast_a ? 0 : b * g.m * g.k),
                static_cast<int>(lda), F(g.b) + b * sb, static_cast<int>(ldb), g.accumulate ? 1.0f : 0.0f,
                F(g.c) + b * sc, static_cast<int>(g.n));
}

// Attention, one (batch, head) at a time with materialised scores [seq_q][seq_kv]; backward recomputes them. K and
// V rows of one sequence are kv_position_stride() rows apart (a position-major KV cache) and sequences start
// kv_sequence_stride() rows apart; queries are the last seq_q positions (causal offset seq_kv - seq_q).
void run_attention(const core::AttentionOp& a) {
  need(a.q.data && a.k.data && a.v.data && a.o.data, "attention operands have no host data");
  need(a.seq_q >= 1 && a.seq_q <= a.seq_kv, "attention: need 1 <= seq_q <= seq_kv");
  // Grouped-query attention: `group` query heads read one K/V head; their K and V gradients add up. Q and K heads
  // are D wide, V and O heads Dv (MLA: 192 and 128).
  const I Sq = a.seq_q, Skv = a.seq_kv, D = a.head_dim, Dv = a.v_dim(), H = a.heads, Hk = a.kv_head_count();
  need(H % Hk == 0, "attention: kv_heads must divide heads");
  const I group = H / Hk, ldq = H * D, ldo = H * Dv, ldk = Hk * D, ldv = Hk * Dv;
  const I kstride = a.kv_position_stride() * ldk, vstride = a.kv_position_stride() * ldv;
  const float sc = 1.0f / std::sqrt(static_cast<float>(D));
  std::vector<float> p(Z(Sq * Skv)), dp(a.backward ? Z(Sq * Skv) : 0);
  for (I b = 0; b < a.batch; ++b)
    for (I h = 0; h < H; ++h) {
      const I q_off = b * Sq * ldq + h * D, o_off = b * Sq * ldo + h * Dv;
      const I k_off = b * a.kv_sequence_stride() * ldk + (h / group) * D;
      const I v_off = b * a.kv_sequence_stride() * ldv + (h / group) * Dv;
      // Backward: the group's first head writes dK, dV (or adds to them, accumulate_kv_grads), later heads add.
      const float first_of_group = h % group == 0 && !a.accumulate_kv_grads ? 0.f : 1.f;
      const float *q = F(a.q) + q_off, *k = F(a.k) + k_off, *v = F(a.v) + v_off;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(Sq), int(Skv), int(D), sc, q, int(ldq), k,
                  int(kstride), 0.f, p.data(), int(Skv));
      for (I i = 0; i < Sq; ++i) {  // (causal) softmax per row
        float* row = p.data() + i * Skv;
        const I n = a.visible_keys(i);
        const float mx = *std::max_element(row, row + n);
        float sum = 0;
        for (I j = 0; j < n; ++j) sum += (row[j] = std::exp(row[j] - mx));
        for (I j = 0; j < n; ++j) row[j] /= sum;
        for (I j = n; j < Skv; ++j) row[j] = 0;
      }
      if (!a.backward) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(Sq), int(Dv), int(Skv), 1.f, p.data(), int(Skv), v,
                    int(vstride), 0.f, F(a.o) + o_off, int(ldo));
        continue;
      }
      // Queries may be the last Sq of Skv positions (a context-parallel chunk over the gathered sequence), with K and
      // V (and their gradients) position-major; d_k and d_v rows past seq_kv are not written.
      need(a.d_o.data && a.d_q.data && a.d_k.data && a.d_v.data, "attention backward operands have no host data");
      const float* d_o = F(a.d_o) + o_off;
      // dV = P^T dO; dP = dO V^T; dS = P * (dP - rowsum(dP * P)); dQ = sc dS K; dK = sc dS^T Q.
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(Skv), int(Dv), int(Sq), 1.f, p.data(), int(Skv), d_o,
                  int(ldo), first_of_group, F(a.d_v) + v_off, int(vstride));
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(Sq), int(Skv), int(Dv), 1.f, d_o, int(ldo), v,
                  int(vstride), 0.f, dp.data(), int(Skv));
      for (I i = 0; i < Sq; ++i) {
        float dot = 0;
        for (I j = 0; j < Skv; ++j) dot += dp[Z(i * Skv + j)] * p[Z(i * Skv + j)];
        for (I j = 0; j < Skv; ++j) dp[Z(i * Skv + j)] = p[Z(i * Skv + j)] * (dp[Z(i * Skv + j)] - dot);
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(Sq), int(D), int(Skv), sc, dp.data(), int(Skv), k,
                  int(kstride), 0.f, F(a.d_q) + q_off, int(ldq));
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(Skv), int(D), int(Sq), sc, dp.data(), int(Skv), q,
                  int(ldq), first_of_group, F(a.d_k) + k_off, int(kstride));
    }
}

void gate_topk(const TensorOp& op) {
  const I T = op.dims[0], E = op.dims[1], K = op.dims[2], C = op.dims[3];
  const bool sigmoid = op.dims.size() > 4 && op.dims[4] != 0;
  const I G = op.dims.size() > 5 ? op.dims[5] : 1, M = op.dims.size() > 6 ? op.dims[6] : 0;
  need(G >= 1 && E % G == 0, "gate_topk: the groups must divide the experts");
  const float* logits = F(op.in[0]);
  const float* bias = sigmoid ? F(op.in[1]) : nullptr;
  float *probs = F(op.out[0]), *w = F(op.out[3]);
  int *experts = N(op.out[1]), *slots = N(op.out[2]), *counts = N(op.out[4]);
  std::fill(counts, counts + E, 0);
  const I per_group = E / G;
  std::vector<char> allowed(Z(E), 1);
  for (I t = 0; t < T; ++t) {
    const float* l = logits + t * E;
    float* p = probs + t * E;
    if (sigmoid) {
      for (I e = 0; e < E; ++e) p[e] = 1.f / (1.f + std::exp(-l[e]));
    } else {
      const float mx = *std::max_element(l, l + E);
      float sum = 0;
      for (I e = 0; e < E; ++e) sum += (p[e] = std::exp(l[e] - mx));
      for (I e = 0; e < E; ++e) p[e] /= sum;
    }
    auto score = [&](I e) { return bias ? p[e] + bias[e] : p[e]; };  // selects; the weights stay p
    if (M > 0 && M < G) {  // group-limited: the M groups whose two best scores sum highest (ties: lower group)
      std::vector<float> group_score(Z(G));
      for (I g = 0; g < G; ++g) {
        float first = -FLT_MAX, second = -FLT_MAX;
        for (I e = g * per_group; e < (g + 1) * per_group; ++e) {
          const float v = score(e);
          if (v > first) second = first, first = v;
          else if (v > second) second = v;
        }
        group_score[Z(g)] = per_group > 1 ? first + second : first;
      }
      std::vector<char> group_on(Z(G), 0);
      for (I m = 0; m < M; ++m) {
        I best = -1;
        for (I g = 0; g < G; ++g)
          if (!group_on[Z(g)] && (best < 0 || group_score[Z(g)] > group_score[Z(best)])) best = g;
        if (best >= 0) group_on[Z(best)] = 1;
      }
      for (I e = 0; e < E; ++e) allowed[Z(e)] = group_on[Z(e / per_group)];
    }
    float chosen = 0;
    for (I j = 0; j < K; ++j) {  // top-k by repeated arg-max; ties go to the lower expert id
      I best = -1;
      for (I e = 0; e < E; ++e) {
        bool taken = !allowed[Z(e)];
        for (I i = 0; i < j; ++i) taken |= experts[t * K + i] == e;
        if (!taken && (best < 0 || score(e) > score(best))) best = e;
      }
      need(best >= 0, "gate_topk: fewer allowed experts than top-k");
      experts[t * K + j] = static_cast<int>(best);
      w[t * K + j] = p[best];
      chosen += p[best];
      ++counts[best];
    }
    if (K > 1)
      for (I j = 0; j < K; ++j) w[t * K + j] /= chosen;
  }
  std::vector<I> fill(Z(E), 0);
  for (I j = 0; j < K; ++j)
    for (I t = 0; t < T; ++t) {
      const int e = experts[t * K + j];
      slots[t * K + j] = fill[Z(e)] < C ? static_cast<int>(e * C + fill[Z(e)]++) : -1;
    }
}

void gate_bwd(const TensorOp& op) {
  const I T = op.dims[0], E = op.dims[1], K = op.dims[2];
  const bool sigmoid = op.dims.size() > 3 && op.dims[3] != 0;
  const float *probs = F(op.in[0]), *w = F(op.in[2]), *dw = F(op.in[3]);
  const int* experts = N(op.in[1]);
  float* dl = F(op.out[0]);
  std::vector<float> dp(Z(E));
  for (I t = 0; t < T; ++t) {
    std::fill(dp.begin(), dp.end(), 0.f);
    const float* p = probs + t * E;
    if (K == 1) {
      dp[Z(experts[t])] = dw[t];
    } else {  // w_j = p_j / S with S = sum of chosen p: dp_j = (dw_j - sum_i dw_i w_i) / S
      float s = 0, dot = 0;
      for (I j = 0; j < K; ++j) s += p[experts[t * K + j]], dot += dw[t * K + j] * w[t * K + j];
      for (I j = 0; j < K; ++j) dp[Z(experts[t * K + j])] = (dw[t * K + j] - dot) / s;
    }
    if (sigmoid) {  // each score is its own sigmoid
      for (I e = 0; e < E; ++e) dl[t * E + e] = dp[Z(e)] * p[e] * (1.f - p[e]);
      continue;
    }
    float dot = 0;
    for (I e = 0; e < E; ++e) dot += p[e] * dp[Z(e)];
    for (I e = 0; e < E; ++e) dl[t * E + e] = p[e] * (dp[Z(e)] - dot);
  }
}

void permute(const TensorOp& op) {
  const I T = op.dims[0], H = op.dims[1], K = op.dims[2], S = op.dims[3];
  const std::size_t row = Z(H) * sizeof(float);
  switch (op.kind) {
    case TensorOpKind::dispatch: {
      const float* x = F(op.in[0]);
      const int* slots = N(op.in[1]);
      float* send = F(op.out[0]);
      std::vector<char> used(Z(S), 0);
      for (I i = 0; i < T * K; ++i)
        if (slots[i] >= 0) std::memcpy(send + slots[i] * H, x + (i / K) * H, row), used[Z(slots[i])] = 1;
      for (I s = 0; s < S; ++s)
        if (!used[Z(s)]) std::memset(send + s * H, 0, row);
      break;
    }
    case TensorOpKind::dispatch_bwd: {
      const float* ds = F(op.in[0]);
      const int* slots = N(op.in[1]);
      float* dx = F(op.out[0]);
      std::memset(dx, 0, Z(T) * row);
      for (I i = 0; i < T * K; ++i)
        if (slots[i] >= 0)
          for (I h = 0; h < H; ++h) dx[(i / K) * H + h] += ds[slots[i] * H + h];
      break;
    }
    case TensorOpKind::combine: {
      const float *y = F(op.in[0]), *w = F(op.in[2]);
      const int* slots = N(op.in[1]);
      float* out = F(op.out[0]);
      std::memset(out, 0, Z(T) * row);
      for (I i = 0; i < T * K; ++i)
        if (slots[i] >= 0)
          for (I h = 0; h < H; ++h) out[(i / K) * H + h] += w[i] * y[slots[i] * H + h];
      break;
    }
    default: {  // combine_bwd
      const float *dout = F(op.in[0]), *y = F(op.in[1]), *w = F(op.in[3]);
      const int* slots = N(op.in[2]);
      float *dy = F(op.out[0]), *dw = F(op.out[1]);
      std::vector<char> used(Z(S), 0);
      for (I i = 0; i < T * K; ++i) {
        dw[i] = 0;
        if (slots[i] < 0) continue;
        const float* g = dout + (i / K) * H;
        float* d = dy + slots[i] * H;
        const float* v = y + slots[i] * H;
        float dot = 0;
        for (I h = 0; h < H; ++h) d[h] = w[i] * g[h], dot += g[h] * v[h];
        dw[i] = dot;
        used[Z(slots[i])] = 1;
      }
      for (I s = 0; s < S; ++s)
        if (!used[Z(s)]) std::memset(dy + s * H, 0, row);
    }
  }
}

// exp with a degree-6 polynomial after range reduction (relative error ~2e-7), written without calls or branches
// so that the GeLU loops vectorise: libm's scalar tanh made GeLU cost as much as the expert GEMMs.
inline float fast_exp(float x) {
  x = std::min(88.f, std::max(-87.f, x));
  const float k = (x * 1.44269504f + 12582912.f) - 12582912.f;  // round to nearest without a libm call
  const float r = x - k * 0.693145751953125f - k * 1.428606765330187e-06f;
  const float p =
      1.f + r * (1.f + r * (0.5f + r * (1.f / 6 + r * (1.f / 24 + r * (1.f / 120 + r * (1.f / 720))))));
  const std::int32_t bits = (static_cast<std::int32_t>(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}
// GeLU, tanh form: 0.5 x (1 + tanh(u)) = x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3).
inline float gelu_f(float x) { return x / (1.f + fast_exp(-1.5957691216f * (x + 0.044715f * x * x * x))); }
inline float gelu_d(float x) {
  const float s = 1.f / (1.f + fast_exp(-1.5957691216f * (x + 0.044715f * x * x * x)));
  return s + 2.f * x * s * (1.f - s) * 0.7978845608f * (1.f + 3.f * 0.044715f * x * x);
}

// The GeLU loops, cloned per instruction set and chosen at load time: the default x86-64 build vectorises them
// with 4-wide SSE only, which left GeLU and its backward at ~20% of the expert FFN's time at hidden 256 (the
// GEMMs use OpenBLAS's AVX-512 kernels). Results may differ in the last bit between machines (FMA contraction),
// never between runs or ranks on one machine.
#if defined(__x86_64__) && defined(__GNUC__)
#define MOESYS_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MOESYS_VECTOR_CLONES
#endif
MOESYS_VECTOR_CLONES void gelu_loop(const float* x, float* y, I n) {
  for (I i = 0; i < n; ++i) y[i] = gelu_f(x[i]);
}
MOESYS_VECTOR_CLONES void gelu_bwd_loop(const float* x, const float* dy, float* dx, I n) {
  for (I i = 0; i < n; ++i) dx[i] = gelu_d(x[i]) * dy[i];
}

// SwiGLU rows [gate | up]: y = silu(g) * u with silu(g) = g / (1 + e^-g).
inline float sigmoid_f(float x) { return 1.f / (1.f + fast_exp(-x)); }
MOESYS_VECTOR_CLONES void swiglu_loop(const float* x, float* y, I R, I f) {
  for (I r = 0; r < R; ++r) {
    const float *g = x + r * 2 * f, *u = g + f;
    float* o = y + r * f;
    for (I i = 0; i < f; ++i) o[i] = g[i] * sigmoid_f(g[i]) * u[i];
  }
}
MOESYS_VECTOR_CLONES void swiglu_bwd_loop(const float* x, const float* dy, float* dx, I R, I f) {
  for (I r = 0; r < R; ++r) {
    const float *g = x + r * 2 * f, *u = g + f, *d = dy + r * f;
    float *dg = dx + r * 2 * f, *du = dg + f;
    for (I i = 0; i < f; ++i) {
      const float s = sigmoid_f(g[i]), silu = g[i] * s;
      dg[i] = d[i] * u[i] * (s + g[i] * s * (1.f - s));
      du[i] = d[i] * silu;
    }
  }
}

// Rotary positions: the pair (2i, 2i+1) of every head of token t turns by p * base^(-2i/D), p = first + t mod S.
// Angles in double, then float, as the CUDA kernel does.
void rope(const TensorOp& op) {
  const I T = op.dims[0], Hh = op.dims[1], D = op.dims[2], S = op.dims[3], first = op.dims[4];
  const I stride = op.dims.size() > 6 ? op.dims[6] : D, offset = op.dims.size() > 7 ? op.dims[7] : 0;
  const double sign = op.dims[5] != 0 ? -1.0 : 1.0, base = op.scalars.at(0);
  need(D % 2 == 0, "rope: the head width must be even");
  float* x = F(op.out[0]);
  for (I t = 0; t < T; ++t) {
    const double p = static_cast<double>(first + t % S);
    for (I i = 0; i < D / 2; ++i) {
      const double angle = sign * p * std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(D));
      const float c = static_cast<float>(std::cos(angle)), sn = static_cast<float>(std::sin(angle));
      for (I h = 0; h < Hh; ++h) {
        float* pair = x + (t * Hh + h) * stride + offset + 2 * i;
        const float a = pair[0], b = pair[1];
        pair[0] = a * c - b * sn, pair[1] = a * sn + b * c;
      }
    }
  }
}

void layernorm(const TensorOp& op, bool backward) {
  // RMSNorm (the last scalar 1): no mean, no bias; the mean output is 0, so xhat = x * rstd in both passes.
  const I T = op.dims[0], H = op.dims[1];
  const float *x = F(op.in[0]), *g = F(op.in[1]);
  if (!backward) {
    const bool rms = op.scalars.size() > 1 && op.scalars[1] != 0;
    const float* b = F(op.in[2]);
    float *y = F(op.out[0]), *mean = F(op.out[1]), *rstd = F(op.out[2]);
    const double eps = op.scalars.empty() ? 1e-5 : op.scalars[0];
    for (I t = 0; t < T; ++t) {
      const float* r = x + t * H;
      double m = 0, v = 0;
      if (!rms) {
        for (I h = 0; h < H; ++h) m += r[h];
        m /= double(H);
      }
      for (I h = 0; h < H; ++h) v += (r[h] - m) * (r[h] - m);
      const float rs = static_cast<float>(1.0 / std::sqrt(v / double(H) + eps));
      mean[t] = static_cast<float>(m), rstd[t] = rs;
      for (I h = 0; h < H; ++h) y[t * H + h] = (r[h] - mean[t]) * rs * g[h] + (rms ? 0.f : b[h]);
    }
    return;
  }
  const bool rms = !op.scalars.empty() && op.scalars[0] != 0;
  const float *mean = F(op.in[2]), *rstd = F(op.in[3]), *dy = F(op.in[4]);
  float *dx = F(op.out[0]), *dg = F(op.out[1]), *db = F(op.out[2]);
  for (I t = 0; t < T; ++t) {
    double s1 = 0, s2 = 0;  // mean of dxhat and of dxhat * xhat
    for (I h = 0; h < H; ++h) {
      const float xh = (x[t * H + h] - mean[t]) * rstd[t], d = dy[t * H + h];
      dg[h] += d * xh;
      if (!rms) db[h] += d;
      s1 += d * g[h], s2 += d * g[h] * xh;
    }
    s1 = rms ? 0.0 : s1 / double(H), s2 /= double(H);
    for (I h = 0; h < H; ++h) {
      const float xh = (x[t * H + h] - mean[t]) * rstd[t];
      dx[t * H + h] = rstd[t] * (dy[t * H + h] * g[h] - float(s1) - xh * float(s2));
    }
  }
}

void run_tensor(const TensorOp& op) {
  need(op.dtype == core::Dtype::fp32, std::string(core::to_string(op.kind)) + ": dtype must be fp32");
  for (const auto& b : op.in) need(b.data != nullptr, std::string(core::to_string(op.kind)) + ": input without data");
  for (const auto& b : op.out)
    need(b.data != nullptr, std::string(core::to_string(op.kind)) + ": output without data");
  const auto& dm = op.dims;
  switch (op.kind) {
    case TensorOpKind::gate_topk: return gate_topk(op);
    case TensorOpKind::gate_bwd: return gate_bwd(op);
    case TensorOpKind::dispatch:
    case TensorOpKind::dispatch_bwd:
    case TensorOpKind::combine:
    case TensorOpKind::combine_bwd: return permute(op);
    case TensorOpKind::block_transpose: {
      const I A = dm[0], B = dm[1], n = dm[2];
      for (I a = 0; a < A; ++a)
        for (I b = 0; b < B; ++b)
          std::memcpy(F(op.out[0]) + (b * A + a) * n, F(op.in[0]) + (a * B + b) * n, Z(n) * sizeof(float));
      return;
    }
    case TensorOpKind::add_bias:
      for (I g = 0; g < dm[0]; ++g)
        for (I m = 0; m < dm[1]; ++m) cblas_saxpy(int(dm[2]), 1.f, F(op.in[0]) + g * dm[2], 1,
                                                  F(op.out[0]) + (g * dm[1] + m) * dm[2], 1);
      return;
    case TensorOpKind::bias_grad:
      for (I g = 0; g < dm[0]; ++g) {
        float* db = F(op.out[0]) + g * dm[2];
        if (op.scalars.empty() || op.scalars[0] == 0) std::fill(db, db + dm[2], 0.f);
        for (I m = 0; m < dm[1]; ++m) {
          const float* row = F(op.in[0]) + (g * dm[1] + m) * dm[2];
          for (I n = 0; n < dm[2]; ++n) db[n] += row[n];
        }
      }
      return;
    case TensorOpKind::gelu: return gelu_loop(F(op.in[0]), F(op.out[0]), dm[0]);
    case TensorOpKind::swiglu: return swiglu_loop(F(op.in[0]), F(op.out[0]), dm[0], dm[1]);
    case TensorOpKind::swiglu_bwd: return swiglu_bwd_loop(F(op.in[0]), F(op.in[1]), F(op.out[0]), dm[0], dm[1]);
    case TensorOpKind::rope: return rope(op);
    case TensorOpKind::mla_keys: {
      const I T = dm[0], H = dm[1], dn = dm[2], dr = dm[3];
      for (I t = 0; t < T; ++t)
        for (I h = 0; h < H; ++h) {
          float* k = F(op.out[0]) + (t * H + h) * (dn + dr);
          std::memcpy(k, F(op.in[0]) + (t * H + h) * dn, Z(dn) * sizeof(float));
          std::memcpy(k + dn, F(op.in[1]) + t * dr, Z(dr) * sizeof(float));
        }
      return;
    }
    case TensorOpKind::mla_keys_bwd: {
      const I T = dm[0], H = dm[1], dn = dm[2], dr = dm[3];
      for (I t = 0; t < T; ++t) {
        float* d_rope = F(op.out[1]) + t * dr;
        std::fill(d_rope, d_rope + dr, 0.f);
        for (I h = 0; h < H; ++h) {  // heads in order: the sums repeat bitwise
          const float* dk = F(op.in[0]) + (t * H + h) * (dn + dr);
          std::memcpy(F(op.out[0]) + (t * H + h) * dn, dk, Z(dn) * sizeof(float));
          for (I i = 0; i < dr; ++i) d_rope[i] += dk[dn + i];
        }
      }
      return;
    }
    case TensorOpKind::gelu_bwd: return gelu_bwd_loop(F(op.in[0]), F(op.in[1]), F(op.out[0]), dm[0]);
    case TensorOpKind::add:
      for (I i = 0; i < dm[0]; ++i) F(op.out[0])[i] = F(op.in[0])[i] + F(op.in[1])[i];
      return;
    case TensorOpKind::scale: cblas_sscal(int(dm[0]), float(op.scalars.at(0)), F(op.out[0]), 1); return;
    case TensorOpKind::fill: std::fill(F(op.out[0]), F(op.out[0]) + dm[0], float(op.scalars.at(0))); return;
    case TensorOpKind::layernorm: return layernorm(op, false);
    case TensorOpKind::layernorm_bwd: return layernorm(op, true);
    case TensorOpKind::embedding: {
      const I T = dm[0], H = dm[1], V = dm[2], S = dm[3];
      const bool positions = dm.size() < 5 || dm[4] != 0;
      for (I t = 0; t < T; ++t) {
        const int id = N(op.in[0])[t];
        need(id >= 0 && id < V, "embedding: token id out of range");
        for (I h = 0; h < H; ++h)
          F(op.out[0])[t * H + h] = F(op.in[1])[id * H + h] + (positions ? F(op.in[2])[(t % S) * H + h] : 0.f);
      }
      return;
    }
    case TensorOpKind::embedding_bwd: {
      const I T = dm[0], H = dm[1], S = dm[3];
      const bool positions = dm.size() < 5 || dm[4] != 0;
      for (I t = 0; t < T; ++t) {
        cblas_saxpy(int(H), 1.f, F(op.in[1]) + t * H, 1, F(op.out[0]) + N(op.in[0])[t] * H, 1);
        if (positions) cblas_saxpy(int(H), 1.f, F(op.in[1]) + t * H, 1, F(op.out[1]) + (t % S) * H, 1);
      }
      return;
    }
    case TensorOpKind::softmax_xent: {
      const I T = dm[0], V = dm[1];
      const float gs = float(op.scalars.at(0));
      double loss = 0;
      for (I t = 0; t < T; ++t) {
        const float* l = F(op.in[0]) + t * V;
        float* d = F(op.out[0]) + t * V;
        const float mx = *std::max_element(l, l + V);
        double sum = 0;
        for (I v = 0; v < V; ++v) sum += std::exp(double(l[v] - mx));
        const int y = N(op.in[1])[t];
        loss += std::log(sum) - double(l[y] - mx);
        for (I v = 0; v < V; ++v) d[v] = gs * float(std::exp(double(l[v] - mx)) / sum);
        d[y] -= gs;
      }
      F(op.out[1])[0] = float(loss);
      return;
    }
    case TensorOpKind::gather_rows: {
      const I R = dm[0], n = dm[1], Rx = dm[2];
      for (I i = 0; i < R; ++i) {
        const int src = N(op.in[1])[i];
        need(src < Rx, "gather_rows: row index out of range");
        float* y = F(op.out[0]) + i * n;
        if (src < 0)
          std::fill(y, y + n, 0.f);
        else
          std::memcpy(y, F(op.in[0]) + I{src} * n, Z(n) * sizeof(float));
      }
      return;
    }
    case TensorOpKind::remap_index:
      for (I i = 0; i < dm[0]; ++i) {
        const int at = N(op.in[0])[i];
        need(at < dm[1], "remap_index: index out of range");
        N(op.out[0])[i] = at < 0 ? -1 : N(op.in[1])[at];
      }
      return;
    case TensorOpKind::scatter_add_rows: {
      const I R = dm[0], n = dm[1], Ry = dm[2];
      for (I i = 0; i < R; ++i) {
        const int dst = N(op.in[1])[i];
        need(dst < Ry, "scatter_add_rows: row index out of range");
        if (dst >= 0) cblas_saxpy(int(n), 1.f, F(op.in[0]) + i * n, 1, F(op.out[0]) + I{dst} * n, 1);
      }
      return;
    }
    case TensorOpKind::argmax:
      for (I t = 0; t < dm[0]; ++t) {
        const float* row = F(op.in[0]) + t * dm[1];
        N(op.out[0])[t] = static_cast<int>(std::max_element(row, row + dm[1]) - row);  // first of equal maxima
      }
      return;
    case TensorOpKind::adamw: {
      const auto& s = op.scalars;
      const float lr = float(s.at(0)), b1 = float(s.at(1)), b2 = float(s.at(2)), eps = float(s.at(3)),
                  wd = float(s.at(4));
      const double step = s.at(5);
      const float c1 = float(1 - std::pow(double(b1), step)), c2 = float(1 - std::pow(double(b2), step));
      float *p = F(op.out[0]), *m = F(op.out[1]), *v = F(op.out[2]);
      const float* g = F(op.in[0]);
      for (I i = 0; i < dm[0]; ++i) {
        m[i] = b1 * m[i] + (1 - b1) * g[i];
        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
        p[i] -= lr * ((m[i] / c1) / (std::sqrt(v[i] / c2) + eps) + wd * p[i]);
      }
      return;
    }
  }
}

}  // namespace

void run_kernel(const core::Kernel& kernel) {
  if (const auto* g = std::get_if<core::GemmOp>(&kernel)) return run_gemm(*g);
  if (const auto* a = std::get_if<core::AttentionOp>(&kernel)) return run_attention(*a);
  if (const auto* t = std::get_if<core::TensorOp>(&kernel)) return run_tensor(*t);
  throw std::invalid_argument("cpu kernel: ElementwiseOp and GateOp carry no operands; use a TensorOp");
}

}  // namespace moesys::exec::cpu
