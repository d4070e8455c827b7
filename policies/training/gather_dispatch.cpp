// The all-gather token dispatcher (policy.hpp, Dispatcher::all_gather), as Megatron-Core's MoEAllGatherTokenDispatcher
// does it: every member of the expert-parallel group gathers the group's tokens, their capacity slots and combine
// weights; from the slots it picks the rows of its own experts (expert-major, the layout of moe_exchange.hpp with one
// chunk), runs them through its experts, combines them into a partial output of every gathered token and a
// reduce-scatter sums the members' partials back to each token's owner. The backward mirrors it: the output gradient
// is gathered, the experts' row gradients come from the combine's backward, and the input gradient and the weights'
// gradients are reduce-scattered. The gate's slots decide everything: a slot e x C + p of member m is row p of the
// (expert e, member m) block, so both dispatchers compute the same model (their sums run in different orders).
#include "policies/training/rank_trainer.hpp"

#include "model/ops.hpp"

namespace moesys::policies::training {

namespace ops = moesys::model::ops;
using core::streams::kComm;
using core::streams::kCompute;

MoeExchange RankTrainer::gathered_exchange(int moe_layer, const ActivationViews& a) {
  const int P = layout_.expert_group(), L = layout_.local_experts;
  const std::int64_t n = tokens_, k = model_.top_k;
  const Workspace& w = st_.ws;
  MoeExchange x;
  x.peers = P, x.local = L, x.chunks = 1, x.expert_major = true;
  x.capacity = policy_.gate == Gate::gshard ? model_.expert_capacity(n) : n;
  // Slots first, so that the host reads them back while the tokens travel.
  const auto slot_bytes = static_cast<std::uint64_t>(n * k) * 4, all_slots = slot_bytes * static_cast<std::uint64_t>(P);
  rt_.stream_wait(kComm, last_compute_);
  const core::Event routed =
      rt_.all_gather(kComm, ep_group_, st_.ws.slots_raw.slice(0, slot_bytes), w.ag_slots.slice(0, all_slots), all_slots);
  gather_group(a.weights, w.ag_weights, k, a_);
  const core::Event tokens = gather_group(a.ln2, w.ag_tokens, model_.hidden, dispatch_bytes_per_elem());

  // Only real runtimes read the slots back (the simulator pays for the same copy): P x n x k of them per layer.
  std::vector<std::int32_t> slots(real_ ? static_cast<std::size_t>(P * n * k) : 0);
  const int me = layout_.ep_index(rank_);
  x.send_pe.assign(static_cast<std::size_t>(P * L), 0);  // nothing is sent row by row
  if (read_back(w.ag_slots, all_slots, routed, slots.data())) {
    // Rows of my expert e from member p: the kept slots' positions are 0, 1, ... in each (member, expert) block;
    // padded dispatch computes whole blocks: the capacity, or without one (dropless) the group's largest load, as
    // DeepSpeed pads with drop_tokens=false and the routing plan does.
    const bool padded = policy_.dispatch == Dispatch::padded;
    std::int64_t block = x.capacity;
    if (padded && policy_.gate == Gate::dropless) {
      block = 0;
      for (std::int32_t s : slots)
        if (s >= 0) block = std::max<std::int64_t>(block, s % x.capacity + 1);
    }
    x.recv_pe.assign(static_cast<std::size_t>(P * L), padded ? block : 0);
    auto for_mine = [&](auto fn) {
      for (std::int64_t i = 0; i < P * n * k; ++i) {
        const std::int32_t s = slots[static_cast<std::size_t>(i)];
        const std::int64_t e = s / x.capacity;
        if (s >= 0 && e / L == me) fn(i, static_cast<int>(i / (n * k)), static_cast<int>(e % L), s % x.capacity);
      }
    };
    if (!padded)
      for_mine([&](std::int64_t, int p, int e, std::int64_t pos) {
        auto& rows = x.recv_pe[static_cast<std::size_t>(p * L + e)];
        rows = std::max(rows, pos + 1);
      });
    std::vector<std::int64_t> start(static_cast<std::size_t>(P * L));  // [e][p]: first row of the block
    std::int64_t row = 0;
    for (int e = 0; e < L; ++e)
      for (int p = 0; p < P; ++p) {
        start[static_cast<std::size_t>(e * P + p)] = row;
        row += x.recv_pe[static_cast<std::size_t>(p * L + e)];
      }
    x.gathered_rows.assign(slots.size(), -1);
    for_mine([&](std::int64_t i, int p, int e, std::int64_t pos) {
      x.gathered_rows[static_cast<std::size_t>(i)] =
          static_cast<std::int32_t>(start[static_cast<std::size_t>(e * P + p)] + pos);
    });
  } else {  // the simulator: the routing plan's rows
    const LayerRouting& lr = mb_->layers[static_cast<std::size_t>(moe_layer)];
    x.recv_pe = matrix_with_sums(lr.recv_rows(layout_, local_), lr.expert_rows[static_cast<std::size_t>(local_)]);
  }
  x.finish();
  if (x.rows_recv > st_.max_rows_recv)
    throw core::RuntimeFailure("MoE layer " + std::to_string(moe_layer) + " on rank " + std::to_string(rank_) +
                               " computes " + std::to_string(x.rows_recv) + " rows, more than its buffers hold (" +
                               std::to_string(st_.max_rows_recv) + ")");
  upload_gathered_table(x);
  group_ready_ = tokens;  // the permute waits for them, so that the shared experts can run while they travel
  return x;
}

core::Event RankTrainer::gather_group(const core::Buffer& mine, const core::Buffer& group, std::int64_t width,
                                      double bytes_per_elem) {
  const std::uint64_t part = rows_bytes(tokens_, width, bytes_per_elem);
  const std::uint64_t all = part * static_cast<std::uint64_t>(layout_.expert_group());
  return rt_.all_gather(kComm, ep_group_, mine.slice(0, part), group.slice(0, all), all);
}

core::Event RankTrainer::scatter_group(const core::Buffer& group, const core::Buffer& mine, std::int64_t width) {
  const std::uint64_t all = rows_bytes(tokens_, width, a_) * static_cast<std::uint64_t>(layout_.expert_group());
  return rt_.reduce_scatter(kComm, ep_group_, group.slice(0, all), mine.slice(0, all / static_cast<std::uint64_t>(layout_.expert_group())),
                            all, dtype_);
}

void RankTrainer::upload_gathered_table(const MoeExchange& x) {
  const auto bytes = static_cast<std::uint64_t>(layout_.expert_group() * tokens_ * model_.top_k) * 4;
  rt_.stream_wait(kCompute, upload_ints(st_.index, x.gathered_rows, bytes));
}

void RankTrainer::gathered_permute(const MoeExchange& x, const ActivationViews& a) {
  const std::int64_t T = layout_.expert_group() * tokens_, h = model_.hidden, k = model_.top_k;
  rt_.stream_wait(kCompute, group_ready_);
  tensor(ops::dispatch(st_.ws.ag_tokens, st_.index, a.xin, T, h, k, x.rows_recv), "permute");
}

void RankTrainer::gathered_combine(const MoeExchange& x, ActivationViews& a) {
  const std::int64_t T = layout_.expert_group() * tokens_, h = model_.hidden, k = model_.top_k;
  const Workspace& w = st_.ws;
  tensor(ops::combine(a.ret, st_.index, w.ag_weights, w.ag_tokens, T, h, k, x.rows_recv), "combine");
  rt_.stream_wait(kComm, last_compute_);
  rt_.stream_wait(kCompute, scatter_group(w.ag_tokens, a.out, h));
}

void RankTrainer::gather_output_grads(const MoeExchange& x, const ActivationViews& a) {
  const Workspace& w = st_.ws;
  upload_gathered_table(x);  // st_.index holds the last forward layer's table
  rt_.stream_wait(kComm, last_compute_);
  gather_group(a.weights, w.ag_weights, model_.top_k, a_);
  group_ready_ = gather_group(w.dx, w.ag_tokens, model_.hidden, dispatch_bytes_per_elem());
}

void RankTrainer::gathered_combine_backward(const MoeExchange& x, const ActivationViews& a) {
  const std::int64_t T = layout_.expert_group() * tokens_, h = model_.hidden, k = model_.top_k;
  const Workspace& w = st_.ws;
  rt_.stream_wait(kCompute, group_ready_);
  tensor(ops::combine_bwd(w.ag_tokens, a.ret, st_.index, w.ag_weights, w.rows_a, w.ag_dweights, T, h, k, x.rows_recv),
         "combine bwd");
}

void RankTrainer::gathered_permute_backward(const MoeExchange& x) {
  const std::int64_t T = layout_.expert_group() * tokens_, h = model_.hidden, k = model_.top_k;
  const Workspace& w = st_.ws;
  tensor(ops::dispatch_bwd(st_.recv, st_.index, w.ag_tokens, T, h, k, x.rows_recv), "permute bwd");
  rt_.stream_wait(kComm, last_compute_);
  scatter_group(w.ag_dweights, w.dweights, k);
  rt_.stream_wait(kCompute, scatter_group(w.ag_tokens, w.dn, h));
}

}  // namespace moesys::policies::training
