// Expert replicas on one rank (the policies that choose them: expert_replicas.hpp). A copy computes like an own
// expert (moe_layer.cpp routes rows to it); what this file adds is keeping copies consistent with their owners:
//   - after the last micro-batch's backward of a layer, every copy's gradient goes to its owner, which adds it
//     into its own (point-to-point; the owner takes them through one landing buffer, member by member);
//   - before the optimizer, the step's tokens per expert are summed over the stage's ranks, so that every rank
//     chooses the same copies for the next step (real runtimes; the simulator's routing plan made that choice);
//   - after the optimizer, every owner sends its updated expert to the next step's copies.
// Sends run on kReplicaSend and receives on kReplicaRecv, both in the order (MoE layer, member, slot) on every
// rank, so that no transfer waits on one ordered after it.
#include <bit>

#include "model/ops.hpp"
#include "policies/training/rank_trainer.hpp"

namespace moesys::policies::training {

namespace ops = moesys::model::ops;
using core::streams::kComm;
using core::streams::kCompute;
using core::streams::kReplicaRecv;
using core::streams::kReplicaSend;

void RankTrainer::begin_step_replicas(int step) {
  const auto layers = static_cast<std::size_t>(model_.moe_layers());
  if (replica_ready_.empty()) replica_ready_.assign(layers, core::Event{});
  if (real_) {
    if (!replica_planner_)
      replica_planner_ = std::make_unique<ReplicaPlanner>(policy_.replicas, model_.moe_layers(), model_.experts,
                                                          layout_.ep, layout_.local_experts,
                                                          layout_.ep_members_per_node());
    replicas_ = replica_planner_->maps();
  } else {
    replicas_ = plan_.routing.replicas[static_cast<std::size_t>(step)];
  }
  replica_holders_.clear();
  for (const ReplicaMap& m : replicas_) replica_holders_.push_back(m.all_holders());
}

MoeExchange RankTrainer::replicated_exchange(int moe_layer, const std::vector<std::int32_t>& counts,
                                             std::int64_t capacity) const {
  const int P = layout_.ep, S = layout_.expert_slots(), E = model_.experts, me = ep_group_.index_of(rank_);
  MoeExchange x;
  x.peers = P, x.local = S, x.chunks = policy_.overlap_chunks, x.capacity = capacity, x.experts = E;
  x.send_pe.assign(static_cast<std::size_t>(P * S), 0);
  x.recv_pe.assign(static_cast<std::size_t>(P * S), 0);
  x.pieces.resize(static_cast<std::size_t>(E));
  const auto& holders = replica_holders_[static_cast<std::size_t>(moe_layer)];
  auto kept = [&](std::size_t i) { return std::min<std::int64_t>(counts[i], capacity); };
  for (int e = 0; e < E; ++e) {  // my rows of expert e, over its holders
    const auto& h = holders[static_cast<std::size_t>(e)];
    const auto split = split_over(h, me, kept(static_cast<std::size_t>(e)));
    for (std::size_t k = 0; k < h.size(); ++k) {
      if (split[k] == 0) continue;
      const int block = h[k].first * S + h[k].second;
      x.send_pe[static_cast<std::size_t>(block)] += split[k];
      x.pieces[static_cast<std::size_t>(e)].emplace_back(block, split[k]);
    }
  }
  for (int p = 0; p < P; ++p)  // what each member sends to my slots, by the same rule
    for (int e = 0; e < E; ++e) {
      const auto& h = holders[static_cast<std::size_t>(e)];
      const auto split = split_over(h, p, kept(static_cast<std::size_t>(E + p * E + e)));
      for (std::size_t k = 0; k < h.size(); ++k)
        if (h[k].first == me) x.recv_pe[static_cast<std::size_t>(p * S + h[k].second)] += split[k];
    }
  return x;
}

core::Buffer RankTrainer::expert_slot_view(int moe, int slot, bool grad) const {
  const double per = grad ? model_.grad_bytes_per_param() : a_;
  const std::int64_t pe = model_.expert_params_per_expert(), layer = st_.expert_slot[static_cast<std::size_t>(moe)];
  const int L = layout_.local_experts, S = layout_.replica_slots;
  if (slot < L)
    return (grad ? st_.expert_grads : st_.expert_params).slice(rows_bytes(layer * L + slot, pe, per), rows_bytes(1, pe, per));
  return (grad ? st_.replica_grads : st_.replica_params)
      .slice(rows_bytes(layer * S + slot - L, pe, per), rows_bytes(1, pe, per));
}

int RankTrainer::replica_tag(int moe, int member, int slot, bool weights) const {
  // Unique inside a step per layer, member, slot and direction; under MPI's smallest guaranteed tag bound.
  const int per_step = model_.moe_layers() * layout_.ep * layout_.replica_slots * 2;
  return ((step_ % 2) * per_step + ((moe * layout_.ep + member) * layout_.replica_slots + slot) * 2 + (weights ? 1 : 0)) %
         32000;
}

void RankTrainer::reduce_replica_grads(int moe) {
  const ReplicaMap& map = replicas_[static_cast<std::size_t>(moe)];
  if (!map.any()) return;
  const int me = ep_group_.index_of(rank_), S = map.slots, L = map.local;
  const std::int64_t pe = model_.expert_params_per_expert();
  const std::uint64_t bytes = rows_bytes(1, pe, model_.grad_bytes_per_param());
  const auto& ranks = ep_group_.ranks();
  rt_.stream_wait(kReplicaSend, last_compute_);
  for (int j = 0; j < S; ++j)
    if (const int e = map.slot_expert[static_cast<std::size_t>(me * S + j)]; e >= 0)
      rt_.send(kReplicaSend, ranks[static_cast<std::size_t>(e / L)], expert_slot_view(moe, L + j, true), bytes,
               replica_tag(moe, me, j, false));
  rt_.stream_wait(kReplicaRecv, last_compute_);
  for (int m = 0; m < map.ep; ++m)
    for (int j = 0; j < S; ++j) {
      const int e = map.slot_expert[static_cast<std::size_t>(m * S + j)];
      if (e < 0 || e / L != me) continue;
      rt_.recv(kReplicaRecv, ranks[static_cast<std::size_t>(m)], st_.replica_inbox, bytes, replica_tag(moe, m, j, false));
      const core::Buffer own = expert_slot_view(moe, e % L, true);
      replica_reduced_ = rt_.compute(kReplicaRecv, ops::with_dtype(ops::add(own, st_.replica_inbox, own, pe), dtype_),
                                     "replica gradient add");
    }
}

void RankTrainer::measure_expert_load(int step) {
  const int layers = model_.moe_layers(), E = model_.experts;
  const auto bytes = static_cast<std::uint64_t>(4 * E * layers);
  std::vector<std::int32_t> bits;  // fp32 values through the int32 upload path
  if (real_) {
    const std::vector<std::int32_t> counts = read_step_routing();  // [micro][layer][E] of this rank
    std::vector<float> load(static_cast<std::size_t>(E * layers), 0.f);
    for (std::size_t i = 0; i < counts.size(); ++i) load[i % load.size()] += static_cast<float>(counts[i]);
    for (float v : load) bits.push_back(std::bit_cast<std::int32_t>(v));
  }
  rt_.stream_wait(kComm, upload_ints(st_.expert_load, bits, bytes));
  const core::Event summed = rt_.all_reduce(kComm, world_, st_.expert_load, bytes, core::Dtype::fp32);
  std::vector<float> total(static_cast<std::size_t>(E * layers));
  if (!read_back(st_.expert_load, bytes, summed, total.data())) return;  // the simulator's plan chose already
  std::vector<std::vector<double>> load(static_cast<std::size_t>(layers));
  for (int l = 0; l < layers; ++l)
    load[static_cast<std::size_t>(l)].assign(total.begin() + l * E, total.begin() + (l + 1) * E);
  replica_planner_->observe(step, load);
}

void RankTrainer::refresh_replicas(int step) {
  if (step + 1 >= cfg_.steps) return;  // no step left to use them
  const std::vector<ReplicaMap>& next =
      real_ ? replica_planner_->maps() : plan_.routing.replicas[static_cast<std::size_t>(step + 1)];
  const int me = ep_group_.index_of(rank_);
  const std::uint64_t bytes = rows_bytes(1, model_.expert_params_per_expert(), a_);
  const auto& ranks = ep_group_.ranks();
  // The copies may be overwritten once this step's backward is done; the owners' values are final after the
  // optimizer (last_compute_).
  rt_.stream_wait(kReplicaSend, last_compute_);
  rt_.stream_wait(kReplicaRecv, last_compute_);
  for (int moe = 0; moe < model_.moe_layers(); ++moe) {
    replica_ready_[static_cast<std::size_t>(moe)] = {};
    if (st_.expert_slot[static_cast<std::size_t>(moe)] < 0) continue;  // another pipeline stage's layer
    const ReplicaMap& map = next[static_cast<std::size_t>(moe)];
    const int S = map.slots, L = map.local;
    for (int m = 0; m < map.ep; ++m)
      for (int j = 0; j < S; ++j)
        if (const int e = map.slot_expert[static_cast<std::size_t>(m * S + j)]; e >= 0 && e / L == me)
          rt_.send(kReplicaSend, ranks[static_cast<std::size_t>(m)], expert_slot_view(moe, e % L, false), bytes,
                   replica_tag(moe, m, j, true));
    for (int j = 0; j < S; ++j)
      if (const int e = map.slot_expert[static_cast<std::size_t>(me * S + j)]; e >= 0) {
        replica_ready_[static_cast<std::size_t>(moe)] =
            rt_.recv(kReplicaRecv, ranks[static_cast<std::size_t>(e / L)], expert_slot_view(moe, L + j, false), bytes,
                     replica_tag(moe, me, j, true));
        ++counters_.replica_refreshes;
      }
  }
}

void RankTrainer::load_replicas(int pass, std::vector<ReplicaMap>& held) {
  step_ = pass;  // the tags' parity
  begin_step_replicas(pass);
  const int me = ep_group_.index_of(rank_);
  const std::uint64_t bytes = rows_bytes(1, model_.expert_params_per_expert(), a_);
  const auto& ranks = ep_group_.ranks();
  rt_.stream_wait(kReplicaRecv, last_compute_);  // the last pass has read the slots' earlier copies
  for (int moe = 0; moe < model_.moe_layers(); ++moe) {
    const ReplicaMap& map = replicas_[static_cast<std::size_t>(moe)];
    const int S = map.slots, L = map.local;
    auto arriving = [&](int m, int j) {  // the expert slot j of member m receives now, or -1
      const auto at = static_cast<std::size_t>(m * S + j);
      const int e = map.slot_expert[at];
      return e >= 0 && (held.empty() || held[static_cast<std::size_t>(moe)].slot_expert[at] != e) ? e : -1;
    };
    for (int m = 0; m < map.ep; ++m)
      for (int j = 0; j < S; ++j)
        if (const int e = arriving(m, j); e >= 0 && e / L == me)
          rt_.send(kReplicaSend, ranks[static_cast<std::size_t>(m)], expert_slot_view(moe, e % L, false), bytes,
                   replica_tag(moe, m, j, true));
    for (int j = 0; j < S; ++j)
      if (const int e = arriving(me, j); e >= 0) {
        replica_ready_[static_cast<std::size_t>(moe)] =
            rt_.recv(kReplicaRecv, ranks[static_cast<std::size_t>(e / L)], expert_slot_view(moe, L + j, false), bytes,
                     replica_tag(moe, me, j, true));
        ++counters_.replica_refreshes;
      }
  }
  held = replicas_;
}

}  // namespace moesys::policies::training
