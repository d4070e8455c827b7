#include "exec/cuda/device_kernels.hpp"

#include <cublas_v2.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>

#include "exec/cuda/cuda_check.hpp"
#include "exec/cuda/kernels.cuh"

namespace moesys::exec::cuda {

namespace {

using I = std::int64_t;
using core::TensorOpKind;

void need(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument("cuda kernel: " + what);
}
int as_int(I v, const char* what) {
  need(v >= 0 && v <= std::numeric_limits<int>::max(), std::string(what) + " does not fit cuBLAS's int sizes");
  return static_cast<int>(v);
}

// Stream-ordered scratch (cudaMallocAsync): freed on the stream after the kernels that use it, so it costs no
// synchronisation and the pool reuses it on the next step.
class Scratch {
 public:
  Scratch(std::size_t bytes, cudaStream_t s) : stream_(s) {
    MOESYS_CUDA_CHECK(cudaMallocAsync(&ptr_, std::max<std::size_t>(bytes, 16), s));
  }
  ~Scratch() { cudaFreeAsync(ptr_, stream_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
  cudaStream_t stream_;
};

// Row-major C[m,n] = alpha op(A) op(B) + beta C, as the column-major product C^T = op(B)^T op(A)^T.
struct Gemm {
  bool ta = false, tb = false;
  I m = 0, n = 0, k = 0, lda = 0, ldb = 0, ldc = 0, sa = 0, sb = 0, sc = 0, batch = 1;
  float alpha = 1, beta = 0;
};
void gemm(const KernelContext& ctx, const Gemm& g, const void* a, const void* b, void* c, cudaDataType type,
          cublasComputeType_t compute) {
  if (g.m == 0 || g.n == 0 || g.batch == 0) return;
  MOESYS_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
      ctx.cublas, g.tb ? CUBLAS_OP_T : CUBLAS_OP_N, g.ta ? CUBLAS_OP_T : CUBLAS_OP_N, as_int(g.n, "n"),
      as_int(g.m, "m"), as_int(g.k, "k"), &g.alpha, b, type, as_int(g.ldb, "ldb"), g.sb, a, type, as_int(g.lda, "lda"),
      g.sa, &g.beta, c, type, as_int(g.ldc, "ldc"), g.sc, as_int(g.batch, "batch"), compute, CUBLAS_GEMM_DEFAULT));
}

void run_gemm(const core::GemmOp& op, const KernelContext& ctx) {
  cudaDataType type = CUDA_R_32F;
  cublasComputeType_t compute = ctx.allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  switch (op.dtype) {
    case core::Dtype::fp32:
      break;
    case core::Dtype::tf32:
      compute = CUBLAS_COMPUTE_32F_FAST_TF32;
      break;
    case core::Dtype::bf16:
      type = CUDA_R_16BF, compute = CUBLAS_COMPUTE_32F;
      break;  // fp32 accumulate
    case core::Dtype::fp16:
      type = CUDA_R_16F, compute = CUBLAS_COMPUTE_32F;
      break;
    default:
      need(false, "GEMM dtype fp8 is not supported by the CUDA runtime");
  }
  Gemm g;
  g.ta = op.trans_a, g.tb = op.trans_b, g.m = op.m, g.n = op.n, g.k = op.k, g.batch = op.batch;
  g.lda = op.trans_a ? op.m : op.k, g.ldb = op.trans_b ? op.k : op.n, g.ldc = op.n;
  g.sa = op.broadcast_a ? 0 : op.m * op.k;
  g.sb = op.stride_b > 0 ? op.stride_b : op.k * op.n, g.sc = op.stride_c > 0 ? op.stride_c : op.m * op.n;
  g.beta = op.accumulate ? 1.f : 0.f;
  gemm(ctx, g, ctx.address(op.a), ctx.address(op.b), ctx.address(op.c), type, compute);
}

// Attention like the CPU runtime: per batch element and K/V head, the scores of the query heads that read it as
// one strided-batched GEMM (heads sit side by side in a row, so head h starts at column h*D; grouped-query heads
// share their K/V head through a batch stride of 0), a row softmax (causal with the offset seq_kv - seq_q), and the
// value GEMM; K and V rows may be a position-major KV cache (a leading dimension of batch rows). Backward (seq_q ==
// seq_kv, packed K/V) recomputes the probabilities; the K and V gradients of a group add up head by head in order,
// as on the CPU. fp32 throughout.
void run_attention(const core::AttentionOp& a, const KernelContext& ctx) {
  need(a.seq_q >= 1 && a.seq_q <= a.seq_kv, "attention: need 1 <= seq_q <= seq_kv");
  need(!a.backward || (a.seq_q == a.seq_kv && !a.kv_position_major && !a.accumulate_kv_grads),
       "attention backward: seq_q must equal seq_kv with packed K and V, written not accumulated, on the CUDA runtime "
       "(context parallelism runs in the simulator and on CPU ranks)");
  need(a.heads % a.kv_head_count() == 0, "attention: kv_heads must divide heads");
  // Q and K heads D wide, V and O heads Dv (MLA); rows of heads side by side.
  const I S = a.seq_q, Skv = a.seq_kv, D = a.head_dim, Dv = a.v_dim(), Hd = a.heads, groups = a.kv_head_count();
  const I group = Hd / groups, ldq = Hd * D, ldo = Hd * Dv, ldk = groups * D, ldv = groups * Dv;
  const I kstride = a.kv_position_stride() * ldk, vstride = a.kv_position_stride() * ldv;
  const I kseq = a.kv_sequence_stride() * ldk, vseq = a.kv_sequence_stride() * ldv;
  const float sc = 1.0f / std::sqrt(static_cast<float>(D));
  const auto* q = static_cast<const float*>(ctx.address(a.q));
  const auto* k = static_cast<const float*>(ctx.address(a.k));
  const auto* v = static_cast<const float*>(ctx.address(a.v));
  const cublasComputeType_t ct = ctx.allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  Scratch p(std::size_t(Hd * S * Skv) * 4 * (a.backward ? 2 : 1), ctx.stream);
  float* P = p.as<float>();
  float* dP = P + Hd * S * Skv;
  auto G = [&](bool ta, bool tb, I m, I n, I kk, I lda, I sa, I ldb, I sb, I ldc, I scc, float alpha, I batch,
               float beta = 0.f) {
    Gemm g;
    g.ta = ta, g.tb = tb, g.m = m, g.n = n, g.k = kk, g.lda = lda, g.sa = sa, g.ldb = ldb, g.sb = sb, g.ldc = ldc;
    g.sc = scc, g.batch = batch, g.alpha = alpha, g.beta = beta;
    return g;
  };
  // MHA: every head in one batched GEMM (K/V stride one head); GQA: one launch per K/V head over its query heads
  // (stride 0).
  const bool mha = group == 1;
  const I launches = mha ? 1 : groups, batch = mha ? Hd : group, k_step = mha ? D : 0, v_step = mha ? Dv : 0;
  if (!a.backward) {
    for (I b = 0; b < a.batch; ++b) {
      const I q_off = b * S * ldq, o_off = b * S * ldo;
      for (I gi = 0; gi < launches; ++gi)
        gemm(ctx, G(false, true, S, Skv, D, ldq, D, kstride, k_step, Skv, S * Skv, sc, batch),
             q + q_off + gi * group * D, k + b * kseq + gi * D, P + gi * group * S * Skv, CUDA_R_32F, ct);
      kernels::attention_softmax(P, Hd, S, Skv, a.causal, ctx.stream);
      for (I gi = 0; gi < launches; ++gi)
        gemm(ctx, G(false, false, S, Dv, Skv, Skv, S * Skv, vstride, v_step, ldo, Dv, 1.f, batch),
             P + gi * group * S * Skv, v + b * vseq + gi * Dv,
             static_cast<float*>(ctx.address(a.o)) + o_off + gi * group * Dv, CUDA_R_32F, ct);
    }
    return;
  }
  for (I b = 0; b < a.batch; ++b) {
    const I q_off = b * S * ldq, o_off = b * S * ldo, k_b = b * S * ldk, v_b = b * S * ldv;
    for (I gi = 0; gi < launches; ++gi)
      gemm(ctx, G(false, true, S, S, D, ldq, D, ldk, k_step, S, S * S, sc, batch), q + q_off + gi * group * D,
           k + k_b + gi * D, P + gi * group * S * S, CUDA_R_32F, ct);
    kernels::attention_softmax(P, Hd, S, S, a.causal, ctx.stream);
    const auto* d_o = static_cast<const float*>(ctx.address(a.d_o)) + o_off;
    auto* d_v = static_cast<float*>(ctx.address(a.d_v)) + v_b;
    auto* d_k = static_cast<float*>(ctx.address(a.d_k)) + k_b;
    // dV = P^T dO; dP = dO V^T; dS = P * (dP - rowsum(dP * P)); dQ = sc dS K; dK = sc dS^T Q. The K/V gradients
    // of a group add up head by head (beta 1 after the group's first head).
    auto per_kv_head = [&](const float* left, const float* right, I ld_right, I width, float* out, I ld_out,
                           float alpha) {
      if (mha) {
        gemm(ctx, G(true, false, S, width, S, S, S * S, ld_right, width, ld_out, width, alpha, Hd), left, right, out,
             CUDA_R_32F, ct);
        return;
      }
      for (I h = 0; h < Hd; ++h)
        gemm(ctx, G(true, false, S, width, S, S, 0, ld_right, 0, ld_out, 0, alpha, 1, h % group == 0 ? 0.f : 1.f),
             left + h * S * S, right + h * width, out + (h / group) * width, CUDA_R_32F, ct);
    };
    per_kv_head(P, d_o, ldo, Dv, d_v, ldv, 1.f);
    for (I gi = 0; gi < launches; ++gi)
      gemm(ctx, G(false, true, S, S, Dv, ldo, Dv, ldv, v_step, S, S * S, 1.f, batch), d_o + gi * group * Dv,
           v + v_b + gi * Dv, dP + gi * group * S * S, CUDA_R_32F, ct);
    kernels::attention_softmax_bwd(P, dP, Hd, S, ctx.stream);
    for (I gi = 0; gi < launches; ++gi)
      gemm(ctx, G(false, false, S, D, S, S, S * S, ldk, k_step, ldq, D, sc, batch), dP + gi * group * S * S,
           k + k_b + gi * D, static_cast<float*>(ctx.address(a.d_q)) + q_off + gi * group * D, CUDA_R_32F, ct);
    per_kv_head(dP, q + q_off, ldq, D, d_k, ldk, sc);
  }
}

void run_tensor(const core::TensorOp& op, const KernelContext& ctx) {
  const std::string kind = core::to_string(op.kind);
  need(op.dtype == core::Dtype::fp32, kind + ": dtype must be fp32");
  static const std::map<TensorOpKind, std::array<std::size_t, 3>> arity = {
      // inputs, outputs, dims
      {TensorOpKind::gate_topk, {1, 5, 4}},       {TensorOpKind::gate_bwd, {4, 1, 3}},
      {TensorOpKind::dispatch, {2, 1, 4}},        {TensorOpKind::dispatch_bwd, {2, 1, 4}},
      {TensorOpKind::combine, {3, 1, 4}},         {TensorOpKind::combine_bwd, {4, 2, 4}},
      {TensorOpKind::block_transpose, {1, 1, 3}}, {TensorOpKind::add_bias, {1, 1, 3}},
      {TensorOpKind::bias_grad, {1, 1, 3}},       {TensorOpKind::gelu, {1, 1, 1}},
      {TensorOpKind::gelu_bwd, {2, 1, 1}},        {TensorOpKind::add, {2, 1, 1}},
      {TensorOpKind::scale, {0, 1, 1}},           {TensorOpKind::fill, {0, 1, 1}},
      {TensorOpKind::layernorm, {3, 3, 2}},       {TensorOpKind::layernorm_bwd, {5, 3, 2}},
      {TensorOpKind::embedding, {3, 1, 4}},       {TensorOpKind::embedding_bwd, {2, 2, 4}},
      {TensorOpKind::softmax_xent, {2, 2, 2}},    {TensorOpKind::adamw, {1, 3, 1}},
      {TensorOpKind::gather_rows, {2, 1, 3}},     {TensorOpKind::remap_index, {2, 1, 2}},
      {TensorOpKind::argmax, {1, 1, 2}},          {TensorOpKind::scatter_add_rows, {2, 1, 3}},
      {TensorOpKind::swiglu, {1, 1, 2}},          {TensorOpKind::swiglu_bwd, {2, 1, 2}},
      {TensorOpKind::rope, {0, 1, 6}},            {TensorOpKind::mla_keys, {2, 1, 4}},
      {TensorOpKind::mla_keys_bwd, {1, 2, 4}}};
  const auto& n = arity.at(op.kind);
  need(op.in.size() >= n[0] && op.out.size() >= n[1] && op.dims.size() >= n[2],
       kind + ": too few operands or dims (see model/ops.hpp)");
  auto F = [&](const core::Buffer& b) { return static_cast<float*>(ctx.address(b)); };
  auto N = [&](const core::Buffer& b) { return static_cast<int*>(ctx.address(b)); };
  const auto& in = op.in;
  const auto& out = op.out;
  const auto& d = op.dims;
  const cudaStream_t s = ctx.stream;
  const auto scalar = [&](std::size_t i) {
    need(op.scalars.size() > i, kind + ": missing scalar " + std::to_string(i));
    return op.scalars[i];
  };
  namespace k = kernels;
  switch (op.kind) {
    case TensorOpKind::gate_topk: {  // dims {T, E, k, C[, sigmoid, groups, max_groups]}; the bias with the sigmoid
      const bool sigmoid = d.size() > 4 && d[4] != 0;
      need(!sigmoid || in.size() > 1, kind + ": the sigmoid gate needs its bias");
      return k::gate_topk(F(in[0]), sigmoid ? F(in[1]) : nullptr, F(out[0]), N(out[1]), N(out[2]), F(out[3]),
                          N(out[4]), d[0], d[1], d[2], d[3], sigmoid, d.size() > 5 ? d[5] : 1, d.size() > 6 ? d[6] : 0,
                          s);
    }
    case TensorOpKind::gate_bwd:
      return k::gate_bwd(F(in[0]), N(in[1]), F(in[2]), F(in[3]), F(out[0]), d[0], d[1], d[2],
                         d.size() > 3 && d[3] != 0, s);
    case TensorOpKind::dispatch: {
      Scratch inverse{std::size_t(d[3]) * sizeof(int), s};
      return k::dispatch(F(in[0]), N(in[1]), F(out[0]), d[0], d[1], d[2], d[3], inverse.as<int>(), s);
    }
    case TensorOpKind::dispatch_bwd:
      return k::dispatch_bwd(F(in[0]), N(in[1]), F(out[0]), d[0], d[1], d[2], s);
    case TensorOpKind::combine:
      return k::combine(F(in[0]), N(in[1]), F(in[2]), F(out[0]), d[0], d[1], d[2], s);
    case TensorOpKind::combine_bwd: {
      Scratch inverse{std::size_t(d[3]) * sizeof(int), s};
      return k::combine_bwd(F(in[0]), F(in[1]), N(in[2]), F(in[3]), F(out[0]), F(out[1]), d[0], d[1], d[2], d[3],
                            inverse.as<int>(), s);
    }
    case TensorOpKind::block_transpose:
      return k::block_transpose(F(in[0]), F(out[0]), d[0], d[1], d[2], s);
    case TensorOpKind::add_bias:
      return k::add_bias(F(out[0]), F(in[0]), d[0], d[1], d[2], s);
    case TensorOpKind::bias_grad:
      return k::bias_grad(F(in[0]), F(out[0]), d[0], d[1], d[2], !op.scalars.empty() && op.scalars[0] != 0, s);
    case TensorOpKind::gelu:
      return k::gelu(F(in[0]), F(out[0]), d[0], s);
    case TensorOpKind::gelu_bwd:
      return k::gelu_bwd(F(in[0]), F(in[1]), F(out[0]), d[0], s);
    case TensorOpKind::swiglu:
      return k::swiglu(F(in[0]), F(out[0]), d[0], d[1], s);
    case TensorOpKind::swiglu_bwd:
      return k::swiglu_bwd(F(in[0]), F(in[1]), F(out[0]), d[0], d[1], s);
    case TensorOpKind::rope:
      return k::rope(F(out[0]), d[0], d[1], d[2], d[3], d[4], d[5] != 0, scalar(0), d.size() > 6 ? d[6] : d[2],
                     d.size() > 7 ? d[7] : 0, s);
    case TensorOpKind::mla_keys:
      return k::mla_keys(F(in[0]), F(in[1]), F(out[0]), d[0], d[1], d[2], d[3], s);
    case TensorOpKind::mla_keys_bwd:
      return k::mla_keys_bwd(F(in[0]), F(out[0]), F(out[1]), d[0], d[1], d[2], d[3], s);
    case TensorOpKind::add:
      return k::add(F(in[0]), F(in[1]), F(out[0]), d[0], s);
    case TensorOpKind::scale:
      return k::scale(F(out[0]), d[0], float(scalar(0)), s);
    case TensorOpKind::fill:
      return k::fill(F(out[0]), d[0], float(scalar(0)), s);
    case TensorOpKind::layernorm: {  // RMSNorm: the scalar after eps is 1 (model/ops.hpp)
      const bool rms = op.scalars.size() > 1 && op.scalars[1] != 0;
      return k::layernorm(F(in[0]), F(in[1]), rms ? nullptr : F(in[2]), F(out[0]), F(out[1]), F(out[2]), d[0], d[1],
                          op.scalars.empty() ? 1e-5 : op.scalars[0], s);
    }
    case TensorOpKind::layernorm_bwd: {
      const bool rms = !op.scalars.empty() && op.scalars[0] != 0;
      return k::layernorm_bwd(F(in[0]), F(in[1]), F(in[2]), F(in[3]), F(in[4]), F(out[0]), F(out[1]),
                              rms ? nullptr : F(out[2]), d[0], d[1], s);
    }
    case TensorOpKind::embedding: {
      const bool positions = d.size() < 5 || d[4] != 0;
      return k::embedding(N(in[0]), F(in[1]), positions ? F(in[2]) : nullptr, F(out[0]), d[0], d[1], d[2], d[3],
                          ctx.status, s);
    }
    case TensorOpKind::embedding_bwd: {
      const bool positions = d.size() < 5 || d[4] != 0;
      return k::embedding_bwd(N(in[0]), F(in[1]), F(out[0]), positions ? F(out[1]) : nullptr, d[0], d[1], d[2], d[3],
                              s);
    }
    case TensorOpKind::softmax_xent: {
      Scratch rows{std::size_t(d[0]) * sizeof(double), s};
      return k::softmax_xent(F(in[0]), N(in[1]), F(out[0]), F(out[1]), d[0], d[1], float(scalar(0)), rows.as<double>(),
                             ctx.status, s);
    }
    case TensorOpKind::gather_rows:
      return k::gather_rows(F(in[0]), N(in[1]), F(out[0]), d[0], d[1], s);
    case TensorOpKind::scatter_add_rows:
      return k::scatter_add_rows(F(in[0]), N(in[1]), F(out[0]), d[0], d[1], d[2], s);
    case TensorOpKind::remap_index:
      return k::remap_index(N(in[0]), N(in[1]), N(out[0]), d[0], s);
    case TensorOpKind::argmax:
      return k::argmax(F(in[0]), N(out[0]), d[0], d[1], s);
    case TensorOpKind::adamw: {
      const double b1 = scalar(1), b2 = scalar(2), step = scalar(5);
      // Bias corrections in double on the host, then float: the CPU runtime's arithmetic.
      const float c1 = float(1 - std::pow(double(float(b1)), step)), c2 = float(1 - std::pow(double(float(b2)), step));
      return k::adamw(F(in[0]), F(out[0]), F(out[1]), F(out[2]), d[0], float(scalar(0)), float(b1), float(b2),
                      float(scalar(3)), float(scalar(4)), c1, c2, s);
    }
  }
  need(false, kind + ": unknown TensorOp kind");
}

}  // namespace

void run_device_kernel(const core::Kernel& kernel, const KernelContext& ctx) {
  if (const auto* g = std::get_if<core::GemmOp>(&kernel)) return run_gemm(*g, ctx);
  if (const auto* a = std::get_if<core::AttentionOp>(&kernel)) return run_attention(*a, ctx);
  if (const auto* t = std::get_if<core::TensorOp>(&kernel)) return run_tensor(*t, ctx);
  throw std::invalid_argument("cuda kernel: ElementwiseOp and GateOp carry no operands; use a TensorOp");
}

}  // namespace moesys::exec::cuda
