// Text generation, a mode of the per-rank program (rank_trainer.hpp explains why it is not a second program): one
// prefill pass over every sequence's prompt, then one decode pass per further token. Each pass runs the layers of
// training's forward (dense_layers.cpp, moe_layer.cpp) on this pass's tokens: the rank's own sequences through the
// dense layers, their top-k rows through the experts of every rank (two all-to-alls per MoE layer). Attention
// appends the pass's K and V to the layer's cache and reads the whole context from it; the logits of each
// sequence's last position are sampled greedily (argmax) into the token the next pass embeds, on the GPU, so the
// host only waits for each pass's tokens (as a serving loop must, to stream them and stop finished sequences).
// Expert residency orders its slots over the whole generation (every pass's MoE layers): the ring refills a
// released slot with the next pass's first layers while this pass ends.
#include <algorithm>

#include "model/ops.hpp"
#include "policies/training/model_costs.hpp"
#include "policies/training/rank_trainer.hpp"

namespace moesys::policies::training {

namespace ops = moesys::model::ops;
using core::streams::kCompute;

void RankTrainer::generate() {
  const GenerationPlan& g = plan_.generation;
  if (residency_) {
    std::vector<int> order;
    for (int p = 0; p < g.passes(); ++p)
      for (int l = 0; l < model_.moe_layers(); ++l) order.push_back(l);
    residency_->begin_step(1);
    residency_->begin_pass(std::move(order));
  }
  load_prompts();
  std::vector<ReplicaMap> held;  // what the spare expert slots hold (nothing before the first pass)
  for (int pass = 0; pass < g.passes(); ++pass) {
    rt_.begin_phase(pass == 0 ? "prefill" : "decode " + std::to_string(pass));
    const double h2d_before = counters_.h2d_param_bytes;
    if (replicas_on()) load_replicas(pass, held);
    // DeepEP serves the prefill with its normal kernels and each decode pass, a few tokens per rank, with its
    // low-latency ones.
    if (policy_.dispatcher == Dispatcher::deepep)
      a2a_algo_ = pass == 0 ? core::CollectiveAlgo::deepep : core::CollectiveAlgo::deepep_ll;
    generation_pass(pass);
    rt_.wait(last_compute_);  // the sampled tokens
    counters_.pass_end_s.push_back(rt_.now_s());
    counters_.pass_h2d_bytes.push_back(counters_.h2d_param_bytes - h2d_before);
    // The pass's tokens per expert, summed over the ranks: real runs choose the next pass's copies from them.
    if (replicas_on() && pass + 1 < g.passes()) measure_expert_load(pass);
    rt_.end_phase();
  }
  if (policy_.dispatcher == Dispatcher::deepep) a2a_algo_ = core::CollectiveAlgo::deepep;
  rt_.synchronize();
  if (!real_) return;
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(g.passes() * g.sequences));
  read_back(st_.generated, st_.generated.bytes, {}, tokens.data());
  for (int p = 0; p < g.passes(); ++p)
    counters_.generated.emplace_back(tokens.begin() + p * g.sequences, tokens.begin() + (p + 1) * g.sequences);
}

void RankTrainer::load_prompts() {
  // Synthetic prompts, different on every rank and the same under every policy; and, for the prefill's sampling,
  // the row of each sequence's last prompt position.
  const GenerationPlan& g = plan_.generation;
  const std::int64_t n = std::int64_t{g.sequences} * g.prompt_tokens;
  std::vector<std::int32_t> ids, last;
  if (real_) {
    std::uint64_t state = g.seed * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(rank_) * 7907 + 17;
    for (std::int64_t i = 0; i < n; ++i) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      ids.push_back(static_cast<std::int32_t>((state >> 33) % static_cast<std::uint64_t>(model_.vocab)));
    }
    for (int b = 0; b < g.sequences; ++b) last.push_back((b + 1) * g.prompt_tokens - 1);
  }
  rt_.stream_wait(kCompute, upload_ints(st_.ids, ids, static_cast<std::uint64_t>(n) * 4));
  rt_.stream_wait(kCompute, upload_ints(st_.targets, last, static_cast<std::uint64_t>(g.sequences) * 4));
}

void RankTrainer::generation_pass(int pass) {
  const GenerationPlan& g = plan_.generation;
  step_ = pass;
  micro_ = 0;
  mb_ = &plan_.routing.at(pass, 0);
  tokens_ = mb_->tokens[static_cast<std::size_t>(rank_)];
  // The dense units fetched from host memory, in order of use (the embedding unit stays resident).
  units_.clear();
  gathered_.clear();
  released_.clear();
  unit_pos_ = -1;
  for (int l = 1; l <= model_.layers; ++l) units_.push_back(l);

  // Activations: nothing is kept for a backward pass, so every layer carves its views out of one scratch block
  // (stream order on the compute stream makes the reuse safe) and writes its output into one of two buffers, the
  // next layer's input; the FFN activation runs in place (carve_activations' forward_only).
  std::int64_t rows_computed = real_ ? st_.max_rows_recv : 0, rows_sent = real_ ? st_.max_rows_sent : 0;
  if (!real_)
    for (const LayerRouting& lr : mb_->layers) {
      rows_computed = std::max(rows_computed, lr.rows_computed(rank_));
      rows_sent = std::max(rows_sent, lr.rows_sent(rank_));
    }
  auto carve = [&](int kind, std::int64_t tokens, Carver& c) {
    return carve_activations(model_, kind, tokens, rows_computed, rows_sent, c, true);
  };
  Carver moe_size, dense_size, logits_size;
  carve(1, tokens_, moe_size);
  carve(2, tokens_, dense_size);
  carve(3, g.sequences, logits_size);
  core::Buffer scratch =
      rt_.alloc(core::Tier::hbm, std::max({moe_size.used(), dense_size.used(), logits_size.used()}), "activations");
  core::Buffer outs[2];
  for (auto& o : outs) o = rt_.alloc(core::Tier::hbm, rows_bytes(tokens_, model_.hidden, a_), "activations");
  auto views = [&](int kind, std::int64_t tokens, const core::Buffer& out) {
    Carver cut(scratch);
    ActivationViews v = carve(kind, tokens, cut);
    v.out = out;
    return v;
  };

  unit_begin(0);
  act_views_.assign(1, ActivationViews{});
  act_views_.back().out = outs[1];  // layer 0's input
  embedding_forward();
  act_views_.clear();
  unit_end();
  if (residency_) residency_->prefetch(0, false, {});
  int moe = 0;
  for (int l = 0; l < model_.layers; ++l) {
    unit_begin(l + 1);
    const core::Buffer x_in = outs[(l + 1) % 2];
    ActivationViews a = views(model_.is_moe_layer(l) ? 1 : 2, tokens_, outs[l % 2]);
    attention_forward(x_in, a);
    if (model_.is_moe_layer(l))
      moe_forward(moe++, a);
    else
      dense_ffn_forward(a);
    unit_end();
  }
  unit_begin(0);
  ActivationViews logits = views(3, g.sequences, {});  // logits of one position per sequence
  sample(outs[(model_.layers + 1) % 2], logits, pass);
  unit_end();
  // Runtimes free in stream order: the memory is reused only after the kernels issued before the free.
  rt_.free(scratch);
  for (auto& o : outs) rt_.free(o);
}

void RankTrainer::cached_attention(int layer, const core::Buffer& q, const core::Buffer& k, const core::Buffer& v,
                                   const core::Buffer& out) {
  const GenerationPlan& g = plan_.generation;
  const std::int64_t B = g.sequences, queries = g.queries(step_), context = g.context_at(step_);
  const std::int64_t kw = model_.k_width(), vw = model_.kv_width();
  // The pass's rows are [sequence][query]; the cache is [position][sequence]: the new positions of every sequence
  // are one block after the cached ones (a transpose for the prefill, a plain copy for a decode step).
  const std::int64_t before = (context - queries) * B, added = queries * B;
  const core::Buffer kc = st_.kv_k[static_cast<std::size_t>(layer)], vc = st_.kv_v[static_cast<std::size_t>(layer)];
  tensor(ops::block_transpose(k, kc.slice(rows_bytes(before, kw, a_), rows_bytes(added, kw, a_)), B, queries, kw),
         "kv append");
  tensor(ops::block_transpose(v, vc.slice(rows_bytes(before, vw, a_), rows_bytes(added, vw, a_)), B, queries, vw),
         "kv append");
  core::AttentionOp op =
      ops::attention_cached(B, queries, context, model_.heads, model_.attention_qk_dim(), q, kc, vc, out);
  op.kv_heads = model_.attention_kv_heads();
  op.v_head_dim = model_.attention_v_dim();
  op.dtype = dtype_;
  run(op, "attention");
}

void RankTrainer::sample(const core::Buffer& x_last, const ActivationViews& a, int pass) {
  const ModelDtypeGemms output_layer_dtype(*this);
  const GenerationPlan& g = plan_.generation;
  const std::int64_t B = g.sequences, h = model_.hidden, V = model_.vocab;
  core::Buffer last = x_last;
  if (g.queries(pass) > 1) {  // the prefill: each sequence's last prompt position
    last = st_.ws.dx.slice(0, rows_bytes(B, h, a_));
    tensor(ops::gather_rows(x_last, st_.targets, last, B, h, tokens_), "last positions");
  }
  norm_forward(last, 0, kFinalNorm, a.lnf, a.meanf, a.rstdf, B, "final layernorm");
  gemm(B, V, h, a.lnf, param(0, output_layer()), a.logits, "logits", false, true);
  const core::Buffer next =
      st_.generated.slice(static_cast<std::uint64_t>(pass * B) * 4, static_cast<std::uint64_t>(B) * 4);
  tensor(ops::argmax(a.logits, next, B, V), "sample");
}

}  // namespace moesys::policies::training
