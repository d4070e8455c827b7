// The dense parts of a transformer layer, the embedding and the output layer, as kernels with real operands on
// the compute stream. GEMM shapes: a forward Y[n, out] = X[n, in] W[in, out] is gemm(n, out, in); its backward is
// dgrad dX = dY W^T (gemm(n, in, out), trans_b) and wgrad dW += X^T dY (gemm(in, out, n), trans_a). Every
// parameter gradient accumulates into a buffer that grad_sync.cpp zeroed, so micro-batches add up.
// Unit tensors: model_costs.hpp (LayerTensor, EmbeddingTensor). Attention: Q [n][q], K and V [n][kv] (q = heads x
// head_dim, kv = kv_heads x head_dim; MHA with q = kv runs the three projections as one batched GEMM), rotary
// positions applied to Q and K in place. FFNs: W1 [h][in x f] (SwiGLU: in = 2, gate and up side by side), the
// activation, W2 [f][h]. Biases are parameters (counted, reduced, updated) but their adds are not issued.
#include <algorithm>

#include "model/ops.hpp"
#include "policies/training/model_costs.hpp"
#include "policies/training/rank_trainer.hpp"

namespace moesys::policies::training {

namespace ops = moesys::model::ops;

void RankTrainer::norm_forward(const core::Buffer& x, int unit, int gain, const core::Buffer& y,
                               const core::Buffer& mean, const core::Buffer& rstd, std::int64_t rows,
                               const char* name) {
  const std::int64_t h = model_.hidden;
  if (model_.norm == core::NormKind::rmsnorm)
    tensor(ops::rmsnorm(x, param(unit, gain), y, mean, rstd, rows, h), name);
  else
    tensor(ops::layernorm(x, param(unit, gain), param(unit, gain + 1), y, mean, rstd, rows, h), name);
}

void RankTrainer::norm_backward(const core::Buffer& x, int unit, int gain, const core::Buffer& mean,
                                const core::Buffer& rstd, const core::Buffer& dy, const core::Buffer& dx,
                                std::int64_t rows, const char* name) {
  const std::int64_t h = model_.hidden;
  if (model_.norm == core::NormKind::rmsnorm)
    tensor(ops::rmsnorm_bwd(x, param(unit, gain), mean, rstd, dy, dx, grad(unit, gain), rows, h), name);
  else
    tensor(ops::layernorm_bwd(x, param(unit, gain), mean, rstd, dy, dx, grad(unit, gain), grad(unit, gain + 1), rows,
                              h),
           name);
}

void RankTrainer::ffn_activation(const core::Buffer& pre, const core::Buffer& post, std::int64_t rows, std::int64_t f,
                                 bool expert) {
  if (model_.activation == core::Activation::swiglu)
    tensor(ops::swiglu(pre, post, rows, f), expert ? "expert swiglu" : "swiglu");
  else
    tensor(ops::gelu(pre, post, rows * f), expert ? "expert gelu" : "gelu");
}

void RankTrainer::ffn_activation_backward(const core::Buffer& pre, const core::Buffer& d_post,
                                          const core::Buffer& d_pre, std::int64_t rows, std::int64_t f, bool expert) {
  if (model_.activation == core::Activation::swiglu)
    tensor(ops::swiglu_bwd(pre, d_post, d_pre, rows, f), expert ? "expert swiglu bwd" : "swiglu bwd");
  else
    tensor(ops::gelu_bwd(pre, d_post, d_pre, rows * f), expert ? "expert gelu bwd" : "gelu bwd");
}

std::vector<RankTrainer::PositionRun> RankTrainer::position_runs() const {
  // Training sequences of seq_len; a generation pass's queries follow its context; a context-parallel rank holds
  // two zigzag blocks of every sequence, one after the other (context_parallel.cpp).
  if (generating()) {
    const GenerationPlan& g = plan_.generation;
    return {{0, tokens_, g.queries(step_), g.context_at(step_) - g.queries(step_)}};
  }
  if (!context_parallel()) return {{0, tokens_, model_.seq_len, 0}};
  const std::int64_t h = cp_half(), rows = tokens_ / 2;
  const int own = layout_.cp_index(rank_);
  return {{0, rows, h, cp_block(own, 0) * h}, {rows, rows, h, cp_block(own, 1) * h}};
}

void RankTrainer::rope(const core::Buffer& x, std::int64_t heads, std::int64_t d, bool inverse, std::int64_t stride,
                       std::int64_t offset) {
  const std::int64_t width = heads * (stride > 0 ? stride : d);
  for (const PositionRun& r : position_runs())
    tensor(ops::rope(x.slice(rows_bytes(r.row, width, a_), rows_bytes(r.rows, width, a_)), r.rows, heads, d, r.span,
                     r.first, inverse, 10000.0, stride, offset),
           inverse ? "rope bwd" : "rope");
}

void RankTrainer::rotate(const core::Buffer& q, const core::Buffer& k, bool inverse) {
  if (model_.learned_positions) return;
  const std::int64_t d = model_.head_dim();
  rope(q, model_.heads, d, inverse);
  rope(k, model_.kv_head_count(), d, inverse);
}

std::pair<core::Buffer, core::Buffer> RankTrainer::normed_qk(const ActivationViews& a, int unit) {
  const std::int64_t n = tokens_, qw = model_.q_width(), kw = model_.kv_width();
  const std::uint64_t nq = rows_bytes(n, qw, a_), nk = rows_bytes(n, kw, a_);
  if (!model_.qk_norm) return {a.qkv.slice(0, nq), a.qkv.slice(nq, nk)};
  // QK norms: an RMSNorm over every head's row of head_dim (query heads share one gain, key heads another).
  const std::int64_t d = model_.head_dim(), qrows = n * model_.heads, krows = n * model_.kv_head_count();
  const std::uint64_t qs = rows_bytes(qrows, 1, a_), ks = rows_bytes(krows, 1, a_);
  const core::Buffer q = a.qk_normed.slice(0, nq), k = a.qk_normed.slice(nq, nk);
  tensor(ops::rmsnorm(a.qkv.slice(0, nq), param(unit, kQNorm), q, a.qk_mean.slice(0, qs), a.qk_rstd.slice(0, qs),
                      qrows, d),
         "qk norm");
  tensor(ops::rmsnorm(a.qkv.slice(nq, nk), param(unit, kKNorm), k, a.qk_mean.slice(qs, ks), a.qk_rstd.slice(qs, ks),
                      krows, d),
         "qk norm");
  return {q, k};
}

RankTrainer::Qkv RankTrainer::project_qkv(const ActivationViews& a, int unit) {
  if (model_.attention == core::AttentionKind::mla) return mla_project(a, unit);
  const std::int64_t n = tokens_, h = model_.hidden, qw = model_.q_width(), kw = model_.kv_width();
  const core::Buffer w = param(unit, kQkv);
  if (qw == kw) {
    gemm(n, qw, h, a.ln1, w, a.qkv, "qkv", false, false, false, 3, true);
  } else {
    gemm(n, qw, h, a.ln1, w.slice(0, rows_bytes(h, qw, a_)), a.qkv.slice(0, rows_bytes(n, qw, a_)), "q");
    gemm(n, kw, h, a.ln1, w.slice(rows_bytes(h, qw, a_), rows_bytes(2 * h, kw, a_)),
         a.qkv.slice(rows_bytes(n, qw, a_), rows_bytes(2 * n, kw, a_)), "kv", false, false, false, 2, true);
  }
  const core::Buffer v = a.qkv.slice(rows_bytes(n, qw, a_) + rows_bytes(n, kw, a_), rows_bytes(n, kw, a_));
  const auto [q, k] = normed_qk(a, unit);
  rotate(q, k, false);
  return {q, k, v};
}

void RankTrainer::project_qkv_backward(const ActivationViews& a, int unit, const Qkv& d) {
  if (model_.attention == core::AttentionKind::mla) return mla_project_backward(a, unit, d);
  // On exit ws.dn holds the gradient of the attention's normalised input (a.ln1).
  const Workspace& w = st_.ws;
  const std::int64_t n = tokens_, h = model_.hidden, qw = model_.q_width(), kw = model_.kv_width();
  const std::uint64_t nq = rows_bytes(n, qw, a_), nk = rows_bytes(n, kw, a_);
  rotate(d.q, d.k, true);
  if (model_.qk_norm) {  // back through the per-head RMSNorms, in place (each row reads its gradient first)
    const std::int64_t hd = model_.head_dim(), qrows = n * model_.heads, krows = n * model_.kv_head_count();
    const std::uint64_t qs = rows_bytes(qrows, 1, a_), ks = rows_bytes(krows, 1, a_);
    tensor(ops::rmsnorm_bwd(a.qkv.slice(0, nq), param(unit, kQNorm), a.qk_mean.slice(0, qs), a.qk_rstd.slice(0, qs),
                            d.q, d.q, grad(unit, kQNorm), qrows, hd),
           "qk norm bwd");
    tensor(ops::rmsnorm_bwd(a.qkv.slice(nq, nk), param(unit, kKNorm), a.qk_mean.slice(qs, ks),
                            a.qk_rstd.slice(qs, ks), d.k, d.k, grad(unit, kKNorm), krows, hd),
           "qk norm bwd");
  }
  const core::Buffer wqkv = param(unit, kQkv), gqkv = grad(unit, kQkv);
  const std::uint64_t hq = rows_bytes(h, qw, a_), hk = rows_bytes(h, kw, a_);
  if (qw == kw) {
    gemm(h, qw, n, a.ln1, w.dqkv, gqkv, "qkv wgrad", true, false, true, 3, true);
  } else {
    const double g = model_.grad_bytes_per_param();
    gemm(h, qw, n, a.ln1, d.q, gqkv.slice(0, rows_bytes(h, qw, g)), "q wgrad", true, false, true);
    gemm(h, kw, n, a.ln1, w.dqkv.slice(nq, 2 * nk), gqkv.slice(rows_bytes(h, qw, g), rows_bytes(2 * h, kw, g)),
         "kv wgrad", true, false, true, 2, true);
  }
  gemm(n, h, qw, d.q, wqkv.slice(0, hq), w.dn, "qkv dgrad", false, true);
  gemm(n, h, kw, d.k, wqkv.slice(hq, hk), w.dn, "qkv dgrad", false, true, true);
  gemm(n, h, kw, d.v, wqkv.slice(hq + hk, hk), w.dn, "qkv dgrad", false, true, true);
}

core::AttentionOp RankTrainer::attention_op(std::int64_t batch, std::int64_t len, const Qkv& x,
                                            const core::Buffer& out) const {
  core::AttentionOp op =
      ops::attention(batch, len, model_.heads, model_.attention_qk_dim(), x.q, x.k, x.v, out);
  op.kv_heads = model_.attention_kv_heads();
  op.v_head_dim = model_.attention_v_dim();
  op.dtype = dtype_;
  return op;
}

void RankTrainer::attention_forward(const core::Buffer& x_in, ActivationViews& a) {
  const std::int64_t n = tokens_, h = model_.hidden;
  const int unit = current_unit_;
  norm_forward(x_in, unit, kNorm1, a.ln1, a.mean1, a.rstd1, n, "layernorm");
  // Tensor parallelism: the heads of this rank over every token of the group (sequence_parallel.cpp).
  ActivationViews g = a;
  if (tensor_parallel()) g.ln1 = gather_tokens(a.ln1, st_.ws.sp_gathered);
  const core::Buffer out = tensor_parallel() ? st_.ws.sp_partial : a.mid;
  {
    const GroupTokens all(*this);
    const std::int64_t nt = tokens_, qw = model_.q_width(), kw = model_.k_width();
    const std::int64_t vw = model_.kv_width(), cw = model_.ctx_width();
    const Qkv x = project_qkv(g, unit);
    if (generating()) {  // a KV cache: this pass's queries over every cached position
      cached_attention(unit - 1, x.q, x.k, x.v, a.ctx);
    } else if (context_parallel()) {
      context_attention(x, a.ctx);
    } else {
      // Whole sequences in one kernel; a partial sequence (a multi-task share that does not divide) in another.
      const std::int64_t S = model_.seq_len, full = nt / S, rest = nt % S;
      for (auto [first, batch, len] :
           {std::tuple{std::int64_t{0}, full, S}, std::tuple{full * S, std::int64_t{rest > 0}, rest}}) {
        if (batch <= 0 || len <= 0) continue;
        auto rows = [&](const core::Buffer& b, std::int64_t width) {
          return b.slice(rows_bytes(first, width, a_), rows_bytes(batch * len, width, a_));
        };
        run(attention_op(batch, len, {rows(x.q, qw), rows(x.k, kw), rows(x.v, vw)}, rows(a.ctx, cw)), "attention");
      }
    }
    gemm(nt, h, cw, a.ctx, param(unit, kOut), out, "attention out");
  }
  if (tensor_parallel()) scatter_tokens(out, a.mid);
  tensor(ops::add(a.mid, x_in, a.mid, n * h), "residual");
  norm_forward(a.mid, unit, kNorm2, a.ln2, a.mean2, a.rstd2, n, "layernorm");
}

void RankTrainer::attention_backward(const core::Buffer& x_in, ActivationViews& a, int unit) {
  // On entry ws.dx is the gradient of the attention block's output (a.mid); on exit, of its input.
  const Workspace& w = st_.ws;
  const std::int64_t n = tokens_, h = model_.hidden;
  // Selective recompute: the norm's output again (the QKV weight gradients read it), with the kept statistics'
  // inputs; the same kernel on the same input gives the same values.
  if (redo().layernorm) norm_forward(x_in, unit, kNorm1, a.ln1, a.mean1, a.rstd1, n, "layernorm recompute");
  // Tensor parallelism: the output gradient of every token of the group, and the input gathered again.
  ActivationViews g = a;
  core::Buffer dy = w.dx;
  if (tensor_parallel()) {
    g.ln1 = gather_tokens(a.ln1, w.sp_gathered);
    dy = gather_tokens(w.dx, w.sp_partial);
  }
  {
    const GroupTokens all(*this);
    const std::int64_t nt = tokens_, qw = model_.q_width(), kw = model_.k_width();
    const std::int64_t vw = model_.kv_width(), cw = model_.ctx_width();
    if (redo().mla_up_proj && model_.attention == core::AttentionKind::mla) mla_up_projections(g, unit, true);
    gemm(nt, cw, h, dy, param(unit, kOut), w.dctx, "attention out dgrad", false, true);
    gemm(cw, h, nt, a.ctx, dy, grad(unit, kOut), "attention out wgrad", true, false, true);
    const std::uint64_t nq = rows_bytes(nt, qw, a_), nk = rows_bytes(nt, kw, a_), nv = rows_bytes(nt, vw, a_);
    const Qkv x = attention_inputs(a);
    const Qkv d{w.dqkv.slice(0, nq), w.dqkv.slice(nq, nk), w.dqkv.slice(nq + nk, nv)};
    const std::int64_t S = model_.seq_len, full = nt / S, rest = nt % S;
    if (context_parallel()) context_attention_backward(x, a.ctx, w.dctx, d);
    else for (auto [first, batch, len] :
         {std::tuple{std::int64_t{0}, full, S}, std::tuple{full * S, std::int64_t{rest > 0}, rest}}) {
      if (batch <= 0 || len <= 0) continue;
      auto rows = [&](const core::Buffer& b, std::int64_t width) {
        return b.slice(rows_bytes(first, width, a_), rows_bytes(batch * len, width, a_));
      };
      core::AttentionOp op = attention_op(batch, len, {rows(x.q, qw), rows(x.k, kw), rows(x.v, vw)}, rows(a.ctx, cw));
      op.backward = true;
      op.d_o = rows(w.dctx, cw), op.d_q = rows(d.q, qw), op.d_k = rows(d.k, kw), op.d_v = rows(d.v, vw);
      run(op, "attention bwd");
    }
    project_qkv_backward(g, unit, d);
  }
  // ws.dn: the gradient of the (gathered) norm output, partial over this rank's heads with tensor parallelism.
  core::Buffer dn = w.dn;
  if (tensor_parallel()) {
    dn = w.sp_gathered.slice(0, rows_bytes(n, h, a_));
    scatter_tokens(w.dn, dn);
  }
  norm_backward(x_in, unit, kNorm1, a.mean1, a.rstd1, dn, w.dtmp, n, "layernorm bwd");
  tensor(ops::add(w.dx, w.dtmp, w.dx, n * h), "residual bwd");
}

RankTrainer::Qkv RankTrainer::attention_inputs(const ActivationViews& a) const {
  const std::int64_t n = tokens_, qw = model_.q_width(), kw = model_.k_width(), vw = model_.kv_width();
  const std::uint64_t nq = rows_bytes(n, qw, a_), nk = rows_bytes(n, kw, a_), nv = rows_bytes(n, vw, a_);
  const core::Buffer v = a.qkv.slice(nq + nk, nv);
  if (a.qk_normed) return {a.qk_normed.slice(0, nq), a.qk_normed.slice(nq, nk), v};
  return {a.qkv.slice(0, nq), a.qkv.slice(nq, nk), v};
}

void RankTrainer::ffn_forward(const FfnViews& f, std::int64_t rows, bool expert_names) {
  const std::int64_t h = model_.hidden, in = model_.ffn_in_factor() * f.width;
  gemm(rows, in, h, f.x, f.w1, f.pre, expert_names ? "shared expert in" : "ffn in");
  ffn_activation(f.pre, f.post, rows, f.width, false);
  gemm(rows, h, f.width, f.post, f.w2, f.y, expert_names ? "shared expert out" : "ffn out");
}

void RankTrainer::ffn_backward(const FfnViews& f, const core::Buffer& dy, const core::Buffer& d_pre,
                               const core::Buffer& d_post, const core::Buffer& dx, std::int64_t rows,
                               bool expert_names) {
  // GeLU runs its backward in place (d_post == d_pre); SwiGLU's gradient rows are twice as wide as its output's.
  const std::int64_t h = model_.hidden, in = model_.ffn_in_factor() * f.width;
  gemm(rows, f.width, h, dy, f.w2, d_post, expert_names ? "shared expert out dgrad" : "ffn out dgrad", false, true);
  gemm(f.width, h, rows, f.post, dy, f.g2, expert_names ? "shared expert out wgrad" : "ffn out wgrad", true, false,
       true);
  ffn_activation_backward(f.pre, d_post, d_pre, rows, f.width, false);
  gemm(h, in, rows, f.x, d_pre, f.g1, expert_names ? "shared expert in wgrad" : "ffn in wgrad", true, false, true);
  gemm(rows, h, in, d_pre, f.w1, dx, expert_names ? "shared expert in dgrad" : "ffn in dgrad", false, true);
}

void RankTrainer::dense_ffn_forward(ActivationViews& a) {
  const std::int64_t n = tokens_, h = model_.hidden;
  const int unit = current_unit_;
  // Tensor parallelism: this rank's columns of W1 and rows of W2 over every token of the group.
  const core::Buffer x = tensor_parallel() ? gather_tokens(a.ln2, st_.ws.sp_gathered) : a.ln2;
  const core::Buffer y = tensor_parallel() ? st_.ws.sp_partial : a.out;
  {
    const GroupTokens all(*this);
    ffn_forward({x, param(unit, kFfnIn), param(unit, kFfnOut), a.pre, a.post, y, {}, {}, model_.ffn_hidden()},
                tokens_, false);
  }
  if (tensor_parallel()) scatter_tokens(y, a.out);
  tensor(ops::add(a.out, a.mid, a.out, n * h), "residual");
}

void RankTrainer::dense_ffn_backward(ActivationViews& a, int unit) {
  // On entry ws.dx is the gradient of the layer output; on exit, of a.mid (both residual paths).
  const Workspace& w = st_.ws;
  const std::int64_t n = tokens_, h = model_.hidden;
  if (redo().layernorm) norm_forward(a.mid, unit, kNorm2, a.ln2, a.mean2, a.rstd2, n, "layernorm recompute");
  core::Buffer x = a.ln2, dy = w.dx;
  if (tensor_parallel()) {
    x = gather_tokens(a.ln2, w.sp_gathered);
    dy = gather_tokens(w.dx, w.sp_partial);
  }
  {
    const GroupTokens all(*this);
    const FfnViews f{x, param(unit, kFfnIn), param(unit, kFfnOut), a.pre, a.post, {}, grad(unit, kFfnIn),
                     grad(unit, kFfnOut), model_.ffn_hidden()};
    if (redo().mlp) {  // W1 and the activation again: their outputs feed the activation's and W2's gradients
      gemm(tokens_, model_.ffn_in_factor() * f.width, h, f.x, f.w1, f.pre, "ffn in recompute");
      ffn_activation(f.pre, f.post, tokens_, f.width, false);
    }
    ffn_backward(f, dy, w.dense_f, w.dense_g ? w.dense_g : w.dense_f, w.dn, tokens_, false);
  }
  core::Buffer dn = w.dn;
  if (tensor_parallel()) {
    dn = w.sp_gathered.slice(0, rows_bytes(n, h, a_));
    scatter_tokens(w.dn, dn);
  }
  norm_backward(a.mid, unit, kNorm2, a.mean2, a.rstd2, dn, w.dtmp, n, "layernorm bwd");
  tensor(ops::add(w.dx, w.dtmp, w.dx, n * h), "residual bwd");
}

void RankTrainer::embedding_forward() {
  const std::int64_t n = tokens_, h = model_.hidden, V = model_.vocab;
  const core::Buffer x = act_views_.back().out, table = param(0, kTokenTable);
  if (generating() && step_ > 0) {  // a decode step: the tokens sampled last pass, all at the next position
    const GenerationPlan& g = plan_.generation;
    const std::int64_t B = g.sequences, position = g.context_at(step_) - 1;
    const core::Buffer ids = st_.generated.slice(static_cast<std::uint64_t>((step_ - 1) * B) * 4, static_cast<std::uint64_t>(B) * 4);
    if (!model_.learned_positions) {
      tensor(ops::embedding_no_positions(ids, table, x, n, h, V), "embedding lookup");
      return;
    }
    const core::Buffer pos = param(0, kPositions).slice(rows_bytes(position, h, a_), rows_bytes(1, h, a_));
    tensor(ops::embedding(ids, table, pos, x, n, h, V, 1), "embedding lookup");
    return;
  }
  if (!model_.learned_positions) {
    tensor(ops::embedding_no_positions(st_.ids, table, x, n, h, V), "embedding lookup");
    return;
  }
  // Training sequences of seq_len tokens; a prefill's prompts of prompt_tokens.
  const std::int64_t S = generating() ? plan_.generation.prompt_tokens : model_.seq_len;
  tensor(ops::embedding(st_.ids, table, param(0, kPositions), x, n, h, V, S), "embedding lookup");
}

void RankTrainer::embedding_backward() {
  const std::int64_t n = tokens_, h = model_.hidden, V = model_.vocab;
  if (!model_.learned_positions) {
    tensor(ops::embedding_bwd_no_positions(st_.ids, st_.ws.dx, grad(0, kTokenTable), n, h, V),
           "embedding grad scatter-add");
    return;
  }
  tensor(ops::embedding_bwd(st_.ids, st_.ws.dx, grad(0, kTokenTable), grad(0, kPositions), n, h, V, model_.seq_len),
         "embedding grad scatter-add");
}

int RankTrainer::output_layer() const {
  return model_.tied_embeddings ? kTokenTable : kOutputLayer;
}

void RankTrainer::logits_forward(const core::Buffer& x_last) {
  const ModelDtypeGemms output_layer_dtype(*this);
  ActivationViews& a = act_views_.back();
  const std::int64_t n = tokens_, h = model_.hidden, V = model_.vocab;
  norm_forward(x_last, 0, kFinalNorm, a.lnf, a.meanf, a.rstdf, n, "final layernorm");
  gemm(n, V, h, a.lnf, param(0, output_layer()), a.logits, "logits", false, true);
  // The loss is the mean over the global batch, so gradients summed over ranks and micro-batches are its gradient.
  const double scale = 1.0 / (static_cast<double>(n) * layout_.world * plan_.routing.micro_batches);
  tensor(ops::softmax_xent(a.logits, st_.targets, a.dlogits, st_.ws.loss, n, V, scale), "softmax cross-entropy");
}

void RankTrainer::logits_backward(const core::Buffer& x_last) {
  const ModelDtypeGemms output_layer_dtype(*this);
  ActivationViews& a = act_views_.back();
  const Workspace& w = st_.ws;
  const std::int64_t n = tokens_, h = model_.hidden, V = model_.vocab;
  gemm(n, h, V, a.dlogits, param(0, output_layer()), w.dn, "logits dgrad");
  gemm(V, h, n, a.dlogits, a.lnf, grad(0, output_layer()), "logits wgrad", true, false, true);
  norm_backward(x_last, 0, kFinalNorm, a.meanf, a.rstdf, w.dn, w.dx, n, "final layernorm bwd");
}

}  // namespace moesys::policies::training
