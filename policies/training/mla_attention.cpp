// Multi-head latent attention (DeepSeek-V2/V3) with real operands. Queries: h -> q_lora (RMSNorm) -> heads x (nope +
// rope), or h -> heads x (nope + rope) directly. Keys and values: h -> kv_lora (RMSNorm) -> heads x nope keys and
// heads x v values, and h -> one rope-wide key shared by every head. The rotary parts of the queries and the shared
// key turn by their positions; each head's key is its nope part followed by the shared rotary part (mla_keys).
// Attention then reads 192-wide query and key heads and 128-wide value heads (DeepSeek-V3's widths).
// Weights of the layer's kQkv slot, back to back: Wq_a [h][q_lora], Wq_b [q_lora][q] (or Wq [h][q]), Wkv_a
// [h][kv_lora], Wk_rope [h][rope], Wk_b [kv_lora][heads x nope], Wv_b [kv_lora][heads x v]; the latent norms' gains
// sit in the kQNorm and kKNorm slots. The KV cache of generation holds the assembled keys and the values (not the
// latent: the memory of a naive MLA inference, not of DeepSeek's absorbed one).
#include "model/ops.hpp"
#include "policies/training/model_costs.hpp"
#include "policies/training/rank_trainer.hpp"

namespace moesys::policies::training {

namespace ops = moesys::model::ops;

namespace {
/// The weight blocks of one MLA layer, as element offsets and shapes into the kQkv tensor.
struct MlaWeights {
  std::int64_t h, q, ql, kvl, dn, dr, dv, H;
  std::int64_t q_a = 0, q_b, k_a, k_rope, k_b, v_b;
  explicit MlaWeights(const core::ModelConfig& m)
      : h(m.hidden), q(m.q_width()), ql(m.mla.q_lora_rank), kvl(m.mla.kv_lora_rank), dn(m.mla.qk_nope_head_dim),
        dr(m.mla.qk_rope_head_dim), dv(m.mla.v_head_dim), H(m.heads) {
    q_b = h * ql;                             // with q_lora 0, Wq [h][q] starts at 0
    k_a = ql > 0 ? q_b + ql * q : h * q;
    k_rope = k_a + h * kvl;
    k_b = k_rope + h * dr;
    v_b = k_b + kvl * H * dn;
  }
};
}  // namespace

RankTrainer::Qkv RankTrainer::mla_project(const ActivationViews& a, int unit) {
  const MlaWeights m(model_);
  const std::int64_t n = tokens_;
  const core::Buffer w = param(unit, kQkv);
  auto weight = [&](std::int64_t at, std::int64_t rows, std::int64_t cols) {
    return w.slice(rows_bytes(at, 1, a_), rows_bytes(rows, cols, a_));
  };
  if (m.ql > 0) {
    gemm(n, m.ql, m.h, a.ln1, weight(m.q_a, m.h, m.ql), a.cq, "q down");
    tensor(ops::rmsnorm(a.cq, param(unit, kQNorm), a.cq_normed, a.cq_mean, a.cq_rstd, n, m.ql), "q latent norm");
  }
  mla_up_projections(a, unit, false);
  return {a.qkv.slice(0, rows_bytes(n, m.q, a_)), a.qkv.slice(rows_bytes(n, m.q, a_), rows_bytes(n, m.q, a_)),
          a.qkv.slice(rows_bytes(2 * n, m.q, a_), rows_bytes(n, m.H * m.dv, a_))};
}

void RankTrainer::mla_up_projections(const ActivationViews& a, int unit, bool again) {
  // The per-head queries, keys and values attention reads, from the latents (and the shared rotary key); forward
  // also computes the key/value latent and the shared key between the two. With selective recompute (mla_up_proj)
  // the backward runs the up-projections again: the same kernels on the same kept inputs give the same values.
  const MlaWeights m(model_);
  const std::int64_t n = tokens_;
  const core::Buffer w = param(unit, kQkv);
  auto weight = [&](std::int64_t at, std::int64_t rows, std::int64_t cols) {
    return w.slice(rows_bytes(at, 1, a_), rows_bytes(rows, cols, a_));
  };
  auto name = [again](const char* forward, const char* recompute) { return again ? recompute : forward; };
  const core::Buffer q = a.qkv.slice(0, rows_bytes(n, m.q, a_));
  const core::Buffer k = a.qkv.slice(rows_bytes(n, m.q, a_), rows_bytes(n, m.q, a_));
  const core::Buffer v = a.qkv.slice(rows_bytes(2 * n, m.q, a_), rows_bytes(n, m.H * m.dv, a_));
  if (m.ql > 0)
    gemm(n, m.q, m.ql, a.cq_normed, weight(m.q_b, m.ql, m.q), q, name("q up", "q up recompute"));
  else
    gemm(n, m.q, m.h, a.ln1, weight(0, m.h, m.q), q, name("q", "q recompute"));
  if (!again) {
    gemm(n, m.kvl, m.h, a.ln1, weight(m.k_a, m.h, m.kvl), a.ckv, "kv down");
    gemm(n, m.dr, m.h, a.ln1, weight(m.k_rope, m.h, m.dr), a.k_rope, "k rope");
    tensor(ops::rmsnorm(a.ckv, param(unit, kKNorm), a.ckv_normed, a.ckv_mean, a.ckv_rstd, n, m.kvl),
           "kv latent norm");
  }
  gemm(n, m.H * m.dn, m.kvl, a.ckv_normed, weight(m.k_b, m.kvl, m.H * m.dn), a.k_nope, name("k up", "k up recompute"));
  gemm(n, m.H * m.dv, m.kvl, a.ckv_normed, weight(m.v_b, m.kvl, m.H * m.dv), v, name("v up", "v up recompute"));
  if (!model_.learned_positions) {
    rope(q, m.H, m.dr, false, m.dn + m.dr, m.dn);
    if (!again) rope(a.k_rope, 1, m.dr, false);  // kept rotated
  }
  tensor(ops::mla_keys(a.k_nope, a.k_rope, k, n, m.H, m.dn, m.dr), "mla keys");
}

void RankTrainer::mla_project_backward(const ActivationViews& a, int unit, const Qkv& d) {
  // On exit ws.dn holds the gradient of a.ln1.
  const MlaWeights m(model_);
  const Workspace& ws = st_.ws;
  const std::int64_t n = tokens_;
  const double g = model_.grad_bytes_per_param();
  const core::Buffer w = param(unit, kQkv), gw = grad(unit, kQkv);
  auto weight = [&](std::int64_t at, std::int64_t rows, std::int64_t cols) {
    return w.slice(rows_bytes(at, 1, a_), rows_bytes(rows, cols, a_));
  };
  auto wgrad = [&](std::int64_t at, std::int64_t rows, std::int64_t cols) {
    return gw.slice(rows_bytes(at, 1, g), rows_bytes(rows, cols, g));
  };
  tensor(ops::mla_keys_bwd(d.k, ws.mla_dk_nope, ws.mla_dk_rope, n, m.H, m.dn, m.dr), "mla keys bwd");
  if (!model_.learned_positions) {
    rope(d.q, m.H, m.dr, true, m.dn + m.dr, m.dn);
    rope(ws.mla_dk_rope, 1, m.dr, true);
  }
  // Keys and values back to the latent, through its norm, and to the input.
  gemm(m.kvl, m.H * m.dn, n, a.ckv_normed, ws.mla_dk_nope, wgrad(m.k_b, m.kvl, m.H * m.dn), "k up wgrad", true, false,
       true);
  gemm(m.kvl, m.H * m.dv, n, a.ckv_normed, d.v, wgrad(m.v_b, m.kvl, m.H * m.dv), "v up wgrad", true, false, true);
  gemm(n, m.kvl, m.H * m.dn, ws.mla_dk_nope, weight(m.k_b, m.kvl, m.H * m.dn), ws.mla_dckv, "k up dgrad", false,
       true);
  gemm(n, m.kvl, m.H * m.dv, d.v, weight(m.v_b, m.kvl, m.H * m.dv), ws.mla_dckv, "v up dgrad", false, true, true);
  tensor(ops::rmsnorm_bwd(a.ckv, param(unit, kKNorm), a.ckv_mean, a.ckv_rstd, ws.mla_dckv, ws.mla_dckv,
                          grad(unit, kKNorm), n, m.kvl),
         "kv latent norm bwd");
  gemm(m.h, m.kvl, n, a.ln1, ws.mla_dckv, wgrad(m.k_a, m.h, m.kvl), "kv down wgrad", true, false, true);
  gemm(m.h, m.dr, n, a.ln1, ws.mla_dk_rope, wgrad(m.k_rope, m.h, m.dr), "k rope wgrad", true, false, true);
  gemm(n, m.h, m.kvl, ws.mla_dckv, weight(m.k_a, m.h, m.kvl), ws.dn, "kv down dgrad", false, true);
  gemm(n, m.h, m.dr, ws.mla_dk_rope, weight(m.k_rope, m.h, m.dr), ws.dn, "k rope dgrad", false, true, true);
  // Queries.
  if (m.ql > 0) {
    gemm(m.ql, m.q, n, a.cq_normed, d.q, wgrad(m.q_b, m.ql, m.q), "q up wgrad", true, false, true);
    gemm(n, m.ql, m.q, d.q, weight(m.q_b, m.ql, m.q), ws.mla_dcq, "q up dgrad", false, true);
    tensor(ops::rmsnorm_bwd(a.cq, param(unit, kQNorm), a.cq_mean, a.cq_rstd, ws.mla_dcq, ws.mla_dcq,
                            grad(unit, kQNorm), n, m.ql),
           "q latent norm bwd");
    gemm(m.h, m.ql, n, a.ln1, ws.mla_dcq, wgrad(m.q_a, m.h, m.ql), "q down wgrad", true, false, true);
    gemm(n, m.h, m.ql, ws.mla_dcq, weight(m.q_a, m.h, m.ql), ws.dn, "q down dgrad", false, true, true);
  } else {
    gemm(m.h, m.q, n, a.ln1, d.q, wgrad(0, m.h, m.q), "q wgrad", true, false, true);
    gemm(n, m.h, m.q, d.q, weight(0, m.h, m.q), ws.dn, "q dgrad", false, true, true);
  }
}

}  // namespace moesys::policies::training
