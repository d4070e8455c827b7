// The dense parts of a transformer layer, the embedding and the tied logits, as kernels with real operands on
// the compute stream. GEMM shapes: a forward Y[n, out] = X[n, in] W[in, out] is gemm(n, out, in); its backward is
// dgrad dX = dY W^T (gemm(n, in, out), trans_b) and wgrad dW += X^T dY (gemm(in, out, n), trans_a). Every
// parameter gradient accumulates into a buffer that grad_sync.cpp zeroed, so micro-batches add up.
// Unit tensors (rank_state.hpp): layer unit 0 Wqkv [3][h][h], 2 Wo, 4/5 LN1 gain/bias, 6/7 LN2 gain/bias,
// 8 gate or dense W1, 10 dense W2; embedding unit 0 token table [V][h], 1 positions [S][h], 2/3 final LN.
// Biases are parameters (counted, reduced, updated) but their adds are not issued.
#include <algorithm>

#include "model/ops.hpp"
#include "policies/training/rank_trainer.hpp"

namespace moesys::policies::training {

namespace ops = moesys::model::ops;

namespace {
std::uint64_t rows_bytes(std::int64_t rows, std::int64_t width, double a) {
  return static_cast<std::uint64_t>(static_cast<double>(rows) * static_cast<double>(width) * a);
}
}  // namespace

void RankTrainer::attention_forward(const core::Buffer& x_in, ActivationViews& a) {
  const std::int64_t n = tokens_, h = model_.hidden;
  const std::uint64_t nh = rows_bytes(n, h, a_);
  tensor(ops::layernorm(x_in, param(current_unit_, 4), param(current_unit_, 5), a.ln1, a.mean1, a.rstd1, n, h),
         "layernorm");
  gemm(n, h, h, a.ln1, param(current_unit_, 0), a.qkv, "qkv", false, false, false, 3, true);
  const core::Buffer q = a.qkv.slice(0, nh), k = a.qkv.slice(nh, nh), v = a.qkv.slice(2 * nh, nh);
  if (generating()) {  // a KV cache: this pass's queries over every cached position
    cached_attention(current_unit_ - 1, q, k, v, a.ctx);
  } else {
    // Whole sequences in one kernel; a partial sequence (a multi-task share that does not divide) in another.
    const std::int64_t S = model_.seq_len, full = n / S, rest = n % S;
    for (auto [first, batch, len] :
         {std::tuple{std::int64_t{0}, full, S}, std::tuple{full * S, std::int64_t{rest > 0}, rest}}) {
      if (batch <= 0 || len <= 0) continue;
      const std::uint64_t off = rows_bytes(first, h, a_), sz = rows_bytes(batch * len, h, a_);
      core::AttentionOp op = ops::attention(batch, len, model_.heads, model_.head_dim(), q.slice(off, sz),
                                            k.slice(off, sz), v.slice(off, sz), a.ctx.slice(off, sz));
      op.dtype = dtype_;
      run(op, "attention");
    }
  }
  gemm(n, h, h, a.ctx, param(current_unit_, 2), a.mid, "attention out");
  tensor(ops::add(a.mid, x_in, a.mid, n * h), "residual");
  tensor(ops::layernorm(a.mid, param(current_unit_, 6), param(current_unit_, 7), a.ln2, a.mean2, a.rstd2, n, h),
         "layernorm");
}

void RankTrainer::attention_backward(const core::Buffer& x_in, ActivationViews& a, int unit) {
  // On entry ws.dx is the gradient of the attention block's output (a.mid); on exit, of its input.
  const Workspace& w = st_.ws;
  const std::int64_t n = tokens_, h = model_.hidden;
  const std::uint64_t nh = rows_bytes(n, h, a_);
  gemm(n, h, h, w.dx, param(unit, 2), w.dctx, "attention out dgrad", false, true);
  gemm(h, h, n, a.ctx, w.dx, grad(unit, 2), "attention out wgrad", true, false, true);
  const std::int64_t S = model_.seq_len, full = n / S, rest = n % S;
  const core::Buffer q = a.qkv.slice(0, nh), k = a.qkv.slice(nh, nh), v = a.qkv.slice(2 * nh, nh);
  const core::Buffer dq = w.dqkv.slice(0, nh), dk = w.dqkv.slice(nh, nh), dv = w.dqkv.slice(2 * nh, nh);
  for (auto [first, batch, len] : {std::tuple{std::int64_t{0}, full, S}, std::tuple{full * S, std::int64_t{rest > 0}, rest}}) {
    if (batch <= 0 || len <= 0) continue;
    const std::uint64_t off = rows_bytes(first, h, a_), sz = rows_bytes(batch * len, h, a_);
    core::AttentionOp op = ops::attention_bwd(batch, len, model_.heads, model_.head_dim(), q.slice(off, sz),
                                              k.slice(off, sz), v.slice(off, sz), a.ctx.slice(off, sz),
                                              w.dctx.slice(off, sz), dq.slice(off, sz), dk.slice(off, sz),
                                              dv.slice(off, sz));
    op.dtype = dtype_;
    run(op, "attention bwd");
  }
  gemm(h, h, n, a.ln1, w.dqkv, grad(unit, 0), "qkv wgrad", true, false, true, 3, true);
  const core::Buffer wqkv = param(unit, 0);
  const std::uint64_t hh = rows_bytes(h, h, a_);
  gemm(n, h, h, dq, wqkv.slice(0, hh), w.dn, "qkv dgrad", false, true);
  gemm(n, h, h, dk, wqkv.slice(hh, hh), w.dn, "qkv dgrad", false, true, true);
  gemm(n, h, h, dv, wqkv.slice(2 * hh, hh), w.dn, "qkv dgrad", false, true, true);
  tensor(ops::layernorm_bwd(x_in, param(unit, 4), a.mean1, a.rstd1, w.dn, w.dtmp, grad(unit, 4), grad(unit, 5), n,
                            h),
         "layernorm bwd");
  tensor(ops::add(w.dx, w.dtmp, w.dx, n * h), "residual bwd");
}

void RankTrainer::dense_ffn_forward(ActivationViews& a) {
  const std::int64_t n = tokens_, h = model_.hidden, f = model_.ffn_hidden();
  gemm(n, f, h, a.ln2, param(current_unit_, 8), a.pre, "ffn in");
  tensor(ops::gelu(a.pre, a.post, n * f), "gelu");
  gemm(n, h, f, a.post, param(current_unit_, 10), a.out, "ffn out");
  tensor(ops::add(a.out, a.mid, a.out, n * h), "residual");
}

void RankTrainer::dense_ffn_backward(ActivationViews& a, int unit) {
  // On entry ws.dx is the gradient of the layer output; on exit, of a.mid (both residual paths).
  const Workspace& w = st_.ws;
  const std::int64_t n = tokens_, h = model_.hidden, f = model_.ffn_hidden();
  gemm(n, f, h, w.dx, param(unit, 10), w.dense_f, "ffn out dgrad", false, true);
  gemm(f, h, n, a.post, w.dx, grad(unit, 10), "ffn out wgrad", true, false, true);
  tensor(ops::gelu_bwd(a.pre, w.dense_f, w.dense_f, n * f), "gelu bwd");
  gemm(h, f, n, a.ln2, w.dense_f, grad(unit, 8), "ffn in wgrad", true, false, true);
  gemm(n, h, f, w.dense_f, param(unit, 8), w.dn, "ffn in dgrad", false, true);
  tensor(ops::layernorm_bwd(a.mid, param(unit, 6), a.mean2, a.rstd2, w.dn, w.dtmp, grad(unit, 6), grad(unit, 7), n,
                            h),
         "layernorm bwd");
  tensor(ops::add(w.dx, w.dtmp, w.dx, n * h), "residual bwd");
}

void RankTrainer::embedding_forward() {
  const std::int64_t n = tokens_, h = model_.hidden;
  if (generating() && step_ > 0) {  // a decode step: the tokens sampled last pass, all at the next position
    const GenerationPlan& g = plan_.generation;
    const std::int64_t B = g.sequences, position = g.context_at(step_) - 1;
    const core::Buffer ids = st_.generated.slice(static_cast<std::uint64_t>((step_ - 1) * B) * 4, static_cast<std::uint64_t>(B) * 4);
    const core::Buffer pos = param(0, 1).slice(rows_bytes(position, h, a_), rows_bytes(1, h, a_));
    tensor(ops::embedding(ids, param(0, 0), pos, act_views_.back().out, n, h, model_.vocab, 1), "embedding lookup");
    return;
  }
  // Training sequences of seq_len tokens; a prefill's prompts of prompt_tokens.
  const std::int64_t S = generating() ? plan_.generation.prompt_tokens : model_.seq_len;
  tensor(ops::embedding(st_.ids, param(0, 0), param(0, 1), act_views_.back().out, n, h, model_.vocab, S),
         "embedding lookup");
}

void RankTrainer::embedding_backward() {
  const std::int64_t n = tokens_, h = model_.hidden;
  tensor(ops::embedding_bwd(st_.ids, st_.ws.dx, grad(0, 0), grad(0, 1), n, h, model_.vocab, model_.seq_len),
         "embedding grad scatter-add");
}

void RankTrainer::logits_forward(const core::Buffer& x_last) {
  ActivationViews& a = act_views_.back();
  const std::int64_t n = tokens_, h = model_.hidden, V = model_.vocab;
  tensor(ops::layernorm(x_last, param(0, 2), param(0, 3), a.lnf, a.meanf, a.rstdf, n, h), "final layernorm");
  gemm(n, V, h, a.lnf, param(0, 0), a.logits, "logits", false, true);
  // The loss is the mean over the global batch, so gradients summed over ranks and micro-batches are its gradient.
  const double scale = 1.0 / (static_cast<double>(n) * layout_.world * plan_.routing.micro_batches);
  tensor(ops::softmax_xent(a.logits, st_.targets, a.dlogits, st_.ws.loss, n, V, scale), "softmax cross-entropy");
}

void RankTrainer::logits_backward(const core::Buffer& x_last) {
  ActivationViews& a = act_views_.back();
  const Workspace& w = st_.ws;
  const std::int64_t n = tokens_, h = model_.hidden, V = model_.vocab;
  gemm(n, h, V, a.dlogits, param(0, 0), w.dn, "logits dgrad");
  gemm(V, h, n, a.dlogits, a.lnf, grad(0, 0), "logits wgrad", true, false, true);
  tensor(ops::layernorm_bwd(x_last, param(0, 2), a.meanf, a.rstdf, w.dn, w.dx, grad(0, 2), grad(0, 3), n, h),
         "final layernorm bwd");
}

}  // namespace moesys::policies::training
