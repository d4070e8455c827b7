#include "exec/model/gpt_moe.hpp"

#include <cmath>
#include <random>
#include <stdexcept>

#include "exec/model/ops.hpp"

namespace moesys::exec::model {

using core::streams::kComm;
using core::streams::kCompute;

GptMoe::GptMoe(core::Runtime& rt, GptMoeConfig config)
    : rt_(rt), cfg_(config), world_(core::Group::world(rt.world_size())) {
  if (cfg_.hidden % cfg_.heads != 0) throw std::invalid_argument("gpt-moe: heads must divide hidden");
  T_ = cfg_.tokens(), H_ = cfg_.hidden;
  const std::int64_t V = cfg_.vocab, S = cfg_.seq_len, H = H_;
  const core::Tier hbm = core::Tier::hbm;
  std::uint64_t seed = cfg_.seed * 7919;
  const double sd = 1.0 / std::sqrt(double(H));
  tok_ = make_param(rt_, "tok_emb", V * H, hbm, 0.5, ++seed, true);
  pos_ = make_param(rt_, "pos_emb", S * H, hbm, 0.1, ++seed, true);
  lnf_g_ = make_param(rt_, "lnf.g", H, hbm, 0, 0, true, 1.0);
  lnf_b_ = make_param(rt_, "lnf.b", H, hbm, 0, 0, true);
  wout_ = make_param(rt_, "w_out", H * V, hbm, sd, ++seed, true);
  blocks_.resize(static_cast<std::size_t>(cfg_.layers));
  for (int l = 0; l < cfg_.layers; ++l) {
    Block& b = blocks_[static_cast<std::size_t>(l)];
    const std::string n = "block" + std::to_string(l);
    b.ln1_g = make_param(rt_, n + ".ln1.g", H, hbm, 0, 0, true, 1.0);
    b.ln1_b = make_param(rt_, n + ".ln1.b", H, hbm, 0, 0, true);
    b.wq = make_param(rt_, n + ".wq", H * H, hbm, sd, ++seed, true);
    b.wk = make_param(rt_, n + ".wk", H * H, hbm, sd, ++seed, true);
    b.wv = make_param(rt_, n + ".wv", H * H, hbm, sd, ++seed, true);
    b.wo = make_param(rt_, n + ".wo", H * H, hbm, sd, ++seed, true);
    b.ln2_g = make_param(rt_, n + ".ln2.g", H, hbm, 0, 0, true, 1.0);
    b.ln2_b = make_param(rt_, n + ".ln2.b", H, hbm, 0, 0, true);
    MoeLayerConfig mc;
    mc.tokens = T_, mc.hidden = H, mc.ffn_hidden = H * cfg_.ffn_multiplier, mc.experts = cfg_.experts;
    mc.top_k = cfg_.top_k, mc.capacity_factor = cfg_.capacity_factor, mc.all_to_all = cfg_.all_to_all;
    b.moe = std::make_unique<MoeLayer>(rt_, world_, mc, ++seed, n + ".moe");
    for (auto* a : {&b.x0, &b.n1, &b.q, &b.k, &b.v, &b.att, &b.x1, &b.n2, &b.m}) *a = act(T_ * H);
    for (auto* a : {&b.mean1, &b.rstd1, &b.mean2, &b.rstd2}) *a = act(T_);
  }
  ids_ = act(T_), targets_ = act(T_), xf_ = act(T_ * H), nf_ = act(T_ * H), meanf_ = act(T_), rstdf_ = act(T_);
  logits_ = act(T_ * V), d_logits_ = act(T_ * V), loss_ = act(1);
  gather_ = act(std::int64_t{cfg_.experts} * rt_.world_size());
  for (auto* a : {&dx_, &dn_, &dtmp_, &dq_, &dk_, &dv_, &datt_}) *a = act(T_ * H);
}

GptMoe::~GptMoe() {
  try {
    rt_.synchronize();
    for (auto& b : blocks_) b.moe.reset();
    for (auto* p : params()) free_param(rt_, *p);
    for (auto& b : owned_) rt_.free(b);
  } catch (...) {  // a failed runtime: its memory goes with it
  }
}

core::Buffer GptMoe::act(std::int64_t elems) {
  owned_.push_back(rt_.alloc(core::Tier::hbm, f32_bytes(elems), "activation"));
  return owned_.back();
}

void GptMoe::run(const core::Kernel& kernel, const char* name) { last_ = rt_.compute(kCompute, kernel, name); }

void GptMoe::all_reduce_sum(const core::Buffer& b, std::int64_t elems) {
  if (rt_.world_size() == 1) return;
  rt_.stream_wait(kComm, last_);
  rt_.stream_wait(kCompute, rt_.all_reduce(kComm, world_, b, f32_bytes(elems), core::Dtype::fp32,
                                           core::CollectiveAlgo::automatic));
}

std::vector<Param*> GptMoe::params() {
  std::vector<Param*> p = {&tok_, &pos_, &lnf_g_, &lnf_b_, &wout_};
  for (auto& b : blocks_) {
    for (auto* q : {&b.ln1_g, &b.ln1_b, &b.wq, &b.wk, &b.wv, &b.wo, &b.ln2_g, &b.ln2_b}) p.push_back(q);
    if (b.moe)
      for (auto* q : b.moe->params()) p.push_back(q);
  }
  return p;
}

void GptMoe::set_batch(const std::vector<int>& ids, const std::vector<int>& targets) {
  if (static_cast<std::int64_t>(ids.size()) != T_ || static_cast<std::int64_t>(targets.size()) != T_)
    throw std::invalid_argument("gpt-moe: a batch needs " + std::to_string(T_) + " ids and targets");
  upload(rt_, ids_, ids.data(), f32_bytes(T_));
  upload(rt_, targets_, targets.data(), f32_bytes(T_));
}

double GptMoe::reduce_loss() {
  all_reduce_sum(loss_, 1);
  float loss = 0;
  if (!download(rt_, loss_, &loss, 4)) return 0;
  return double(loss) / double(T_ * rt_.world_size());
}

double GptMoe::forward() { return forward_pass(false); }

double GptMoe::forward_pass(bool then_backward) {
  using namespace ops;
  (void)then_backward;
  const std::int64_t T = T_, H = H_, V = cfg_.vocab, S = cfg_.seq_len, B = cfg_.micro_batch;
  const std::int64_t NH = cfg_.heads, D = H / NH;
  rt_.begin_phase("forward");
  run(embedding(ids_, tok_.value, pos_.value, blocks_.empty() ? xf_ : blocks_[0].x0, T, H, V, S), "dense:embedding");
  for (std::size_t l = 0; l < blocks_.size(); ++l) {
    Block& b = blocks_[l];
    const core::Buffer& next = l + 1 < blocks_.size() ? blocks_[l + 1].x0 : xf_;
    run(layernorm(b.x0, b.ln1_g.value, b.ln1_b.value, b.n1, b.mean1, b.rstd1, T, H), "dense:layernorm");
    run(gemm(T, H, H, b.n1, b.wq.value, b.q), "attention:q");
    run(gemm(T, H, H, b.n1, b.wk.value, b.k), "attention:k");
    run(gemm(T, H, H, b.n1, b.wv.value, b.v), "attention:v");
    run(attention(B, S, NH, D, b.q, b.k, b.v, b.att), "attention:core");
    run(gemm(T, H, H, b.att, b.wo.value, b.x1), "attention:o");
    run(add(b.x1, b.x0, b.x1, T * H), "dense:residual");
    run(layernorm(b.x1, b.ln2_g.value, b.ln2_b.value, b.n2, b.mean2, b.rstd2, T, H), "dense:layernorm");
    b.moe->forward(b.n2, b.m);
    run(add(b.x1, b.m, next, T * H), "dense:residual");
  }
  run(layernorm(xf_, lnf_g_.value, lnf_b_.value, nf_, meanf_, rstdf_, T, H), "dense:layernorm");
  run(gemm(T, V, H, nf_, wout_.value, logits_), "dense:logits");
  run(softmax_xent(logits_, targets_, d_logits_, loss_, T, V, 1.0 / double(T * rt_.world_size())), "dense:loss");
  rt_.end_phase();
  return reduce_loss();
}

double GptMoe::forward_backward() {
  using namespace ops;
  const double loss = forward_pass(true);
  const std::int64_t T = T_, H = H_, V = cfg_.vocab, S = cfg_.seq_len, B = cfg_.micro_batch;
  const std::int64_t NH = cfg_.heads, D = H / NH;
  rt_.begin_phase("backward");
  for (auto* p : {&tok_, &pos_, &lnf_g_, &lnf_b_}) run(fill(p->grad, p->elems), "dense:zero_grad");
  for (auto& b : blocks_)
    for (auto* p : {&b.ln1_g, &b.ln1_b, &b.ln2_g, &b.ln2_b}) run(fill(p->grad, p->elems), "dense:zero_grad");
  run(gemm(H, V, T, nf_, d_logits_, wout_.grad, true), "dense:logits_wgrad");
  run(gemm(T, H, V, d_logits_, wout_.value, dn_, false, true), "dense:logits_dgrad");
  run(layernorm_bwd(xf_, lnf_g_.value, meanf_, rstdf_, dn_, dx_, lnf_g_.grad, lnf_b_.grad, T, H),
      "dense:layernorm_bwd");
  for (auto it = blocks_.rbegin(); it != blocks_.rend(); ++it) {
    Block& b = *it;
    b.moe->backward(dx_, dtmp_);
    run(layernorm_bwd(b.x1, b.ln2_g.value, b.mean2, b.rstd2, dtmp_, dn_, b.ln2_g.grad, b.ln2_b.grad, T, H),
        "dense:layernorm_bwd");
    run(add(dx_, dn_, dx_, T * H), "dense:residual_bwd");
    run(gemm(H, H, T, b.att, dx_, b.wo.grad, true), "attention:o_wgrad");
    run(gemm(T, H, H, dx_, b.wo.value, datt_, false, true), "attention:o_dgrad");
    run(attention_bwd(B, S, NH, D, b.q, b.k, b.v, b.att, datt_, dq_, dk_, dv_), "attention:core_bwd");
    run(gemm(H, H, T, b.n1, dq_, b.wq.grad, true), "attention:q_wgrad");
    run(gemm(H, H, T, b.n1, dk_, b.wk.grad, true), "attention:k_wgrad");
    run(gemm(H, H, T, b.n1, dv_, b.wv.grad, true), "attention:v_wgrad");
    run(gemm(T, H, H, dq_, b.wq.value, dn_, false, true), "attention:qkv_dgrad");
    run(gemm(T, H, H, dk_, b.wk.value, dn_, false, true, true), "attention:qkv_dgrad");
    run(gemm(T, H, H, dv_, b.wv.value, dn_, false, true, true), "attention:qkv_dgrad");
    run(layernorm_bwd(b.x0, b.ln1_g.value, b.mean1, b.rstd1, dn_, dtmp_, b.ln1_g.grad, b.ln1_b.grad, T, H),
        "dense:layernorm_bwd");
    run(add(dx_, dtmp_, dx_, T * H), "dense:residual_bwd");
  }
  run(embedding_bwd(ids_, dx_, tok_.grad, pos_.grad, T, H, V, S), "dense:embedding_bwd");
  rt_.end_phase();
  return loss;
}

void GptMoe::optimizer_step() {
  ++step_;
  rt_.begin_phase("optimizer");
  for (Param* p : params())
    if (p->replicated) all_reduce_sum(p->grad, p->elems);
  for (Param* p : params())
    run(ops::adamw(p->grad, p->value, p->m, p->v, p->elems, cfg_.lr, cfg_.beta1, cfg_.beta2, cfg_.eps,
                   cfg_.weight_decay, step_),
        "optimizer:adamw");
  rt_.end_phase();
}

double GptMoe::train_step() {
  const double loss = forward_backward();
  optimizer_step();
  return loss;
}

std::vector<core::RoutingMatrix> GptMoe::last_routing() {
  std::vector<core::RoutingMatrix> out;
  const int P = rt_.world_size(), E = cfg_.experts;
  for (auto& b : blocks_) {
    rt_.stream_wait(kComm, last_);
    rt_.wait(rt_.all_gather(kComm, world_, b.moe->routed_counts(), gather_, f32_bytes(std::int64_t{P} * E),
                            core::CollectiveAlgo::automatic));
    std::vector<int> counts(static_cast<std::size_t>(P * E));
    if (!download(rt_, gather_, counts.data(), f32_bytes(std::int64_t{P} * E))) continue;
    core::RoutingMatrix m(P, E);
    for (int r = 0; r < P; ++r)
      for (int e = 0; e < E; ++e) m.at(r, e) = counts[static_cast<std::size_t>(r * E + e)];
    out.push_back(std::move(m));
  }
  return out;
}

void synthetic_batch(const GptMoeConfig& c, int rank, int step, std::vector<int>& ids, std::vector<int>& targets) {
  std::mt19937_64 gen(c.seed * 1000003 + std::uint64_t(rank) * 7907 + std::uint64_t(step));
  ids.assign(static_cast<std::size_t>(c.tokens()), 0);
  targets = ids;
  for (int s = 0; s < c.micro_batch; ++s) {
    int t = static_cast<int>(gen() % static_cast<std::uint64_t>(c.vocab));
    for (int i = 0; i < c.seq_len; ++i) {
      const auto at = static_cast<std::size_t>(s * c.seq_len + i);
      ids[at] = t;
      t = (t * 3 + 1) % c.vocab;
      targets[at] = t;
    }
  }
}

}  // namespace moesys::exec::model
