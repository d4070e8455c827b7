#include "policies/training/rank_trainer.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "core/error.hpp"
#include "policies/training/model_costs.hpp"

namespace moesys::policies::training {

TrainingPlan make_training_plan(const TrainingConfig& c) {
  TrainingPlan p;
  p.config = c;
  p.layout = make_layout(c);
  const int gpn = c.cluster.node.gpus, ep = p.layout.ep;
  if (c.policy.all_to_all == AllToAll::hierarchical && p.layout.world > gpn && gpn % ep != 0 && ep % gpn != 0)
    throw core::InfeasibleError(
        "the hierarchical all-to-all needs expert-parallel groups of whole nodes or inside one "
        "node: a group of " +
        std::to_string(ep) + " ranks on nodes of " + std::to_string(gpn) + " GPUs is neither");
  if (c.policy.embedding == Embedding::partition && c.model.hidden % p.layout.world != 0)
    throw core::InfeasibleError("the embedding partition splits hidden (" + std::to_string(c.model.hidden) +
                                ") by columns over " + std::to_string(p.layout.world) +
                                " ranks, which does not divide it");
  p.routing = build_routing_plan(c, p.layout);
  p.memory = plan_memory(c, p.layout, p.routing);
  check_feasible(p.memory);
  return p;
}

std::function<void(core::Runtime&)> training_program(const TrainingPlan& plan, std::vector<RankCounters>& counters) {
  return [&plan, &counters](core::Runtime& rt) {
    RankTrainer trainer(plan, rt, counters.at(static_cast<std::size_t>(rt.rank())));
    trainer.run();
  };
}

RankTrainer::RankTrainer(const TrainingPlan& plan, core::Runtime& rt, RankCounters& counters)
    : plan_(plan),
      cfg_(plan.config),
      model_(plan.config.model),
      policy_(plan.config.policy),
      layout_(plan.layout),
      rt_(rt),
      counters_(counters),
      rank_(rt.rank()),
      a_(core::dtype_bytes(plan.config.model.dtype)),
      world_(core::Group::world(plan.layout.world)),
      ep_group_(plan.layout.ep_group(rank_)),
      edp_group_(plan.layout.edp_group(rank_)),
      node_group_(plan.layout.node_group(rank_)),
      rail_group_(plan.layout.rail_group(rank_)),
      a2a_algo_(policy_.all_to_all == AllToAll::hierarchical ? core::CollectiveAlgo::hierarchical
                                                             : core::CollectiveAlgo::direct) {
  const auto moe = static_cast<std::size_t>(model_.moe_layers());
  const auto local = static_cast<std::size_t>(layout_.local_experts);
  prefetched_.assign(moe, std::vector<bool>(local, false));
  used_last_.assign(moe, std::vector<bool>(local, true));  // before any routing is seen, predict every expert
  fetch_event_.assign(moe, core::Event{});
  slot_free_.assign(2, core::Event{});
  if (policy_.offload == Offload::nvme && policy_.prefetch == Prefetch::routed)
    cache_ = std::make_unique<LfuCache>(plan.memory.cache_entries, policy_.cache);
}

void RankTrainer::run() {
  allocate_persistent();
  for (int s = 0; s < cfg_.steps; ++s) {
    rt_.begin_phase("step " + std::to_string(s));
    for (int m = 0; m < plan_.routing.micro_batches; ++m) {
      forward(s, m);
      backward(s, m, m + 1 == plan_.routing.micro_batches);
    }
    optimizer_step();
    end_step_offload();
    rt_.synchronize();
    rt_.end_phase();
  }
}

void RankTrainer::allocate_persistent() {
  for (const Allocation& a : plan_.memory.ranks[static_cast<std::size_t>(rank_)].persistent) {
    core::Buffer b = rt_.alloc(a.tier, a.bytes, to_string(a.use));
    core::Buffer& rep = a.tier == core::Tier::hbm ? hbm_ : a.tier == core::Tier::dram ? dram_ : ssd_;
    if (!rep) rep = b;
  }
  // Copies need a buffer in each tier they touch even where the plan holds nothing there (e.g. a zero-byte tier).
  if (!dram_) dram_ = core::Buffer{0, core::Tier::dram, 0, nullptr};
  if (!ssd_) ssd_ = core::Buffer{0, core::Tier::ssd, 0, nullptr};
  if (!hbm_) hbm_ = core::Buffer{0, core::Tier::hbm, 0, nullptr};
}

// ---- kernels ----

core::Event RankTrainer::gemm(std::int64_t m, std::int64_t n, std::int64_t k, const char* name, std::int64_t batch) {
  if (m <= 0 || n <= 0 || k <= 0) return last_compute_;
  core::GemmOp op;
  op.m = m;
  op.n = n;
  op.k = k;
  op.batch = batch;
  op.dtype = model_.dtype;
  return last_compute_ = rt_.compute(core::streams::kCompute, op, name);
}

core::Event RankTrainer::gemm_backward(std::int64_t tokens, std::int64_t out, std::int64_t in, const char* name) {
  return gemm(tokens, in, out, name, 2);
}

core::Event RankTrainer::elementwise(double bytes_read, double bytes_written, const char* name, double flop) {
  if (bytes_read <= 0 && bytes_written <= 0) return last_compute_;
  core::ElementwiseOp op;
  op.bytes_read = static_cast<std::uint64_t>(bytes_read);
  op.bytes_written = static_cast<std::uint64_t>(bytes_written);
  op.flop = flop;
  return last_compute_ = rt_.compute(core::streams::kCompute, op, name);
}

core::Event RankTrainer::attention_kernel(std::int64_t tokens, bool backward) {
  // Whole sequences in one kernel; a partial sequence (a multi-task share that does not divide) in another.
  const std::int64_t full = tokens / model_.seq_len, rest = tokens % model_.seq_len;
  for (auto [batch, len] : {std::pair{full, std::int64_t{model_.seq_len}}, std::pair{std::int64_t{rest > 0}, rest}}) {
    if (batch <= 0 || len <= 0) continue;
    core::AttentionOp op;
    op.batch = batch;
    op.heads = model_.heads;
    op.seq_q = op.seq_kv = len;
    op.head_dim = model_.head_dim();
    op.backward = backward;
    op.dtype = model_.dtype;
    last_compute_ = rt_.compute(core::streams::kCompute, op, backward ? "attention bwd" : "attention");
  }
  return last_compute_;
}

// ---- ZeRO-3 unit gathers ----

namespace {
std::int64_t unit_params(const core::ModelConfig& m, const TrainingPolicy& p, int unit) {
  if (unit > 0) return sum(layer_dense_tensors(m, unit - 1));
  auto t = embedding_tensors(m);
  return sum(t) - (p.embedding == Embedding::partition ? t[0] : 0);
}
}  // namespace

void RankTrainer::unit_begin(int unit) {
  if (policy_.dense != DenseSharding::zero3 || layout_.node_ranks == 1) return;
  ++unit_pos_;
  auto issue = [&](std::size_t j) {
    if (j >= units_.size() || j < gathered_.size()) return;
    if (j >= 2) rt_.stream_wait(kGatherStream, released_[j - 2]);  // two gather buffers: reuse the oldest
    const auto bytes = static_cast<std::uint64_t>(a_ * static_cast<double>(unit_params(model_, policy_, units_[j])));
    core::Buffer none;
    gathered_.push_back(rt_.all_gather(kGatherStream, node_group_, none, none, bytes));
    released_.push_back(core::Event{});
  };
  const auto pos = static_cast<std::size_t>(unit_pos_);
  if (pos >= units_.size() || units_[pos] != unit) throw std::logic_error("ZeRO-3 unit order out of step");
  issue(pos);
  issue(pos + 1);  // prefetch one unit ahead
  rt_.stream_wait(core::streams::kCompute, gathered_[pos]);
}

void RankTrainer::unit_end() {
  if (policy_.dense != DenseSharding::zero3 || layout_.node_ranks == 1) return;
  released_[static_cast<std::size_t>(unit_pos_)] = last_compute_;
}

// ---- the step ----

void RankTrainer::forward(int step, int micro) {
  step_ = step;
  micro_ = micro;
  mb_ = &plan_.routing.at(step, micro);
  tokens_ = mb_->tokens[static_cast<std::size_t>(rank_)];
  const std::vector<std::uint64_t> acts = activation_sequence(model_, *mb_, layout_, rank_);
  // The order in which this micro-batch uses the dense units: embedding, layers, embedding again for the tied
  // logits (held through their backward), layers in reverse, embedding for the lookup's backward.
  units_.clear();
  gathered_.clear();
  released_.clear();
  unit_pos_ = -1;
  units_.push_back(0);
  for (int l = 1; l <= model_.layers; ++l) units_.push_back(l);
  units_.push_back(0);
  for (int l = model_.layers; l >= 1; --l) units_.push_back(l);
  units_.push_back(0);

  auto keep = [&](std::size_t i) { activations_.push_back(rt_.alloc(core::Tier::hbm, acts[i], "activations")); };
  rt_.begin_phase("forward");
  unit_begin(0);
  embedding_forward();
  keep(0);
  unit_end();
  if (model_.moe_layers() > 0) prefetch_experts(0, false);
  int moe = 0;
  for (int l = 0; l < model_.layers; ++l) {
    unit_begin(l + 1);
    attention_forward();
    if (model_.is_moe_layer(l))
      moe_forward(moe++);
    else
      dense_ffn_forward();
    keep(static_cast<std::size_t>(l) + 1);
    unit_end();
  }
  unit_begin(0);
  logits_forward();
  keep(acts.size() - 1);
  rt_.end_phase();
}

void RankTrainer::backward(int, int, bool sync_grads) {
  sync_grads_ = sync_grads;
  auto drop = [&] {
    rt_.free(activations_.back());
    activations_.pop_back();
  };
  rt_.begin_phase("backward");
  logits_backward();
  drop();
  unit_end();
  int moe = model_.moe_layers();
  if (moe > 0) prefetch_experts(moe - 1, true);
  for (int l = model_.layers - 1; l >= 0; --l) {
    unit_begin(l + 1);
    if (model_.is_moe_layer(l))
      moe_backward(--moe);
    else
      dense_ffn_backward();
    attention_backward();
    drop();
    if (sync_grads) add_dense_grads(layer_dense_tensors(model_, l), last_compute_);
    unit_end();
  }
  unit_begin(0);
  embedding_backward();
  drop();
  if (sync_grads) {
    auto t = embedding_tensors(model_);
    if (policy_.embedding == Embedding::partition) t.erase(t.begin());  // its shard is complete locally
    add_dense_grads(t, last_compute_);
  }
  unit_end();
  if (sync_grads) flush_grads();
  rt_.end_phase();
}

void RankTrainer::optimizer_step() {
  rt_.stream_wait(core::streams::kCompute, last_reduce_);
  const double world = layout_.world;
  const auto emb = static_cast<double>(embedding_tensors(model_)[0]);
  double dense = static_cast<double>(model_.dense_params() + model_.gate_params());
  double shard = 0;
  if (policy_.embedding == Embedding::partition) {
    dense -= emb;
    shard += std::ceil(emb / world);
  }
  shard += policy_.dense == DenseSharding::ddp ? dense : std::ceil(dense / world);
  if (policy_.offload == Offload::none) {
    const double x = static_cast<double>(model_.moe_layers()) * layout_.local_experts *
                     static_cast<double>(model_.expert_params_per_expert());
    shard += policy_.dense == DenseSharding::ddp ? x : std::ceil(x / layout_.edp);
  }
  const double o = model_.optimizer_bytes_per_param(), g = model_.grad_bytes_per_param();
  // AdamW reads master weights, both moments and the gradient, and writes them back with the fp16 copy.
  core::Event opt = elementwise((o + g) * shard, (o + a_) * shard, "optimizer", 12.0 * shard);
  gather_updated_params(opt);
}

}  // namespace moesys::policies::training
