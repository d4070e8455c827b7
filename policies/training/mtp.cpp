// Multi-token prediction (DeepSeek-V3): module k (k = 0, 1, ...) predicts the token 2 + k positions ahead. It
// normalises the hidden state of the depth before it (the last layer's output for k = 0, module k - 1's block output
// after) and the embedding of the token 1 + k positions ahead (the shared token table), projects the two side by
// side ([2h] -> [h]), runs one transformer block (an MoE layer), normalises its output and computes logits with the
// shared output layer; its cross-entropy, weighted by mtp_loss_weight / modules, adds to the main loss.
//
// The program runs module k's block as layer main_layers + k (ModelConfig::with_mtp_blocks), so that stages,
// routing, experts, gradient buckets and memory treat it as a layer; its other tensors live in that layer's unit
// (kMtp* slots). The modules run on the last model chunk after its logits; their backward runs first and leaves the
// gradient they send to the last layer's output in ws.mtp_dh (added once the main logits' backward has run).
// Activation blocks per module, in stack order: the entry (kind 4: embeddings, norms, projection = block input),
// the block, the head (kind 3: norm, logits and their gradient, which the cross-entropy writes in the forward).
#include "model/ops.hpp"
#include "policies/training/model_costs.hpp"
#include "policies/training/rank_trainer.hpp"

namespace moesys::policies::training {

namespace ops = moesys::model::ops;

core::Buffer RankTrainer::held_param(int unit, int t) const {
  const DenseUnit& u = st_.units[static_cast<std::size_t>(unit)];
  const std::int64_t at = u.offset + u.tensor_offsets[static_cast<std::size_t>(t)];
  return st_.params.slice(rows_bytes(at, 1, a_), rows_bytes(u.tensor_elems[static_cast<std::size_t>(t)], 1, a_));
}

core::Buffer RankTrainer::mtp_ids(int k) const {
  return st_.mtp_ids.slice(static_cast<std::uint64_t>(k * st_.max_tokens) * 4, static_cast<std::uint64_t>(tokens_) * 4);
}

core::Buffer RankTrainer::mtp_targets(int k) const {
  return st_.mtp_targets.slice(static_cast<std::uint64_t>(k * st_.max_tokens) * 4,
                               static_cast<std::uint64_t>(tokens_) * 4);
}

void RankTrainer::mtp_forward(const LayerChunk& ch, int moe) {
  const std::int64_t n = tokens_, h = model_.hidden, V = model_.vocab;
  const Workspace& w = st_.ws;
  std::size_t hidden = act_views_.size() - 2;  // the last layer's block (the logits block is on top)
  for (int l = model_.main_layers(); l < ch.end_layer; ++l, ++moe) {
    const int k = l - model_.main_layers(), unit = l + 1;
    const core::Buffer h_prev = act_views_[hidden].out;
    unit_begin(unit);
    keep_activations(4, n, 0, 0);
    {
      const ActivationViews& e = act_views_.back();
      tensor(ops::embedding_no_positions(mtp_ids(k), held_param(0, kTokenTable), e.mtp_emb, n, h, V),
             "mtp embedding lookup");
      norm_forward(e.mtp_emb, unit, kMtpENorm, e.mtp_enorm, e.mtp_emean, e.mtp_erstd, n, "mtp embedding norm");
      norm_forward(h_prev, unit, kMtpHNorm, e.mtp_hnorm, e.mtp_hmean, e.mtp_hrstd, n, "mtp hidden norm");
      const core::Buffer proj = param(unit, kMtpProj);
      const std::uint64_t half = rows_bytes(h, h, a_);
      gemm(n, h, h, e.mtp_hnorm, proj.slice(0, half), e.out, "mtp projection");
      gemm(n, h, h, e.mtp_enorm, proj.slice(half, half), e.out, "mtp projection", false, false, true);
    }
    kept_layer_forward(l, moe);
    hidden = act_views_.size() - 1;  // this module's block output: the next module's hidden state
    const core::Buffer x = act_views_.back().out;
    keep_activations(3, n, 0, 0);
    const ActivationViews& a = act_views_.back();
    norm_forward(x, unit, kMtpNorm, a.lnf, a.meanf, a.rstdf, n, "mtp final norm");
    unit_end();
    const ModelDtypeGemms output_layer_dtype(*this);
    gemm(n, V, h, a.lnf, held_param(0, output_layer()), a.logits, "mtp logits", false, true);
    // The main loss's scale (the mean over the global batch) times the modules' weight, spread over the modules.
    const double scale = model_.mtp_loss_weight / model_.mtp_blocks /
                         (static_cast<double>(n) * layout_.world * plan_.routing.micro_batches);
    tensor(ops::softmax_xent(a.logits, mtp_targets(k), a.dlogits, w.mtp_loss, n, V, scale),
           "mtp softmax cross-entropy");
  }
}

void RankTrainer::mtp_backward(const LayerChunk& ch) {
  const std::int64_t n = tokens_, h = model_.hidden, V = model_.vocab;
  const Workspace& w = st_.ws;
  int moe = ch.first_moe + ch.moe_layers;
  for (int l = ch.end_layer - 1; l >= model_.main_layers(); --l) {
    const int k = l - model_.main_layers(), unit = l + 1;
    --moe;
    unit_begin(unit);
    open_unit_grads(unit);
    {  // the head: logits, then its norm into the gradient of the block's output
      const ModelDtypeGemms output_layer_dtype(*this);
      const ActivationViews& a = act_views_.back();
      const core::Buffer x = act_views_[act_views_.size() - 2].out;
      gemm(n, h, V, a.dlogits, held_param(0, output_layer()), w.dn, "mtp logits dgrad");
      gemm(V, h, n, a.dlogits, a.lnf, grad(0, output_layer()), "mtp logits wgrad", true, false, true);
      norm_backward(x, unit, kMtpNorm, a.meanf, a.rstdf, w.dn, w.dx, n, "mtp final norm bwd");
    }
    drop_activations();
    if (l + 1 < ch.end_layer)  // the next module read this block's output as its hidden state
      tensor(ops::add(w.dx, w.mtp_dh, w.dx, n * h), "mtp hidden grad add");
    kept_layer_backward(l, moe);  // ws.dx: the gradient of the projection's output
    {
      const ActivationViews& e = act_views_.back();
      const core::Buffer h_prev = act_views_[act_views_.size() - 3].out;  // under the logits block before this entry
      const core::Buffer proj = param(unit, kMtpProj), gproj = grad(unit, kMtpProj);
      const std::uint64_t half = rows_bytes(h, h, a_), ghalf = rows_bytes(h, h, model_.grad_bytes_per_param());
      gemm(h, h, n, e.mtp_hnorm, w.dx, gproj.slice(0, ghalf), "mtp projection wgrad", true, false, true);
      gemm(h, h, n, e.mtp_enorm, w.dx, gproj.slice(ghalf, ghalf), "mtp projection wgrad", true, false, true);
      gemm(n, h, h, w.dx, proj.slice(0, half), w.dn, "mtp projection dgrad", false, true);
      gemm(n, h, h, w.dx, proj.slice(half, half), w.dtmp, "mtp projection dgrad", false, true);
      norm_backward(h_prev, unit, kMtpHNorm, e.mtp_hmean, e.mtp_hrstd, w.dn, w.mtp_dh, n, "mtp hidden norm bwd");
      norm_backward(e.mtp_emb, unit, kMtpENorm, e.mtp_emean, e.mtp_erstd, w.dtmp, w.dn, n, "mtp embedding norm bwd");
      tensor(ops::embedding_bwd_no_positions(mtp_ids(k), w.dn, grad(0, kTokenTable), n, h, V),
             "mtp embedding grad scatter-add");
    }
    unit_grads_done(unit);
    drop_activations();
    unit_end();
  }
}

}  // namespace moesys::policies::training
