// The MoE FFN of one layer on one rank: gate, token-count exchange (counted dispatch), permutation, dispatch
// all-to-all, the local experts' FFNs, combine all-to-all, un-permutation. With overlap_chunks = c > 1 the rows
// to every peer are split into c chunks: dispatch chunks run back to back on the communication stream while the
// compute stream works on the chunks already arrived, and combine chunks follow as their experts finish.
#include "policies/training/rank_trainer.hpp"

namespace moesys::policies::training {

namespace {
std::int64_t part(std::int64_t total, int chunk, int chunks) {
  return total / chunks + (chunk < total % chunks ? 1 : 0);
}
}  // namespace

std::vector<std::uint64_t> RankTrainer::chunk_bytes(const std::vector<std::int64_t>& rows, int chunk,
                                                    int chunks) const {
  std::vector<std::uint64_t> out;
  for (auto r : rows)
    out.push_back(static_cast<std::uint64_t>(static_cast<double>(part(r, chunk, chunks)) * model_.hidden * a_));
  return out;
}

void RankTrainer::expert_ffn(const std::vector<std::int64_t>& rows, bool backward, int chunk, int chunks) {
  // An expert's two weight matrices, and the dgrad / wgrad GEMMs of backward, all have the same FLOPs and the
  // same operand bytes as GemmOp{rows, f, h}, so they are issued as one batched (grouped) GEMM per expert: the
  // roofline time is the same as for the separate GEMMs, minus their extra launches.
  const std::int64_t h = model_.hidden, f = model_.ffn_hidden();
  for (auto total : rows) {
    const std::int64_t r = part(total, chunk, chunks);
    if (r <= 0) continue;
    const double act = static_cast<double>(r) * static_cast<double>(f) * a_;
    core::GemmOp op;
    op.m = r;
    op.n = f;
    op.k = h;
    op.batch = backward ? 4 : 2;
    op.dtype = model_.dtype;
    last_compute_ = rt_.compute(core::streams::kCompute, op,
                                backward ? "expert ffn bwd (grouped gemm)" : "expert ffn (grouped gemm)");
    elementwise(backward ? 2 * act : act, act, backward ? "expert gelu bwd" : "expert gelu");
  }
}

void RankTrainer::moe_forward(int moe_layer) {
  const LayerRouting& lr = mb_->layers[static_cast<std::size_t>(moe_layer)];
  const std::vector<std::int64_t> send = lr.send_rows[static_cast<std::size_t>(rank_)];
  const std::vector<std::int64_t> recv = lr.recv_rows(layout_, rank_);
  const std::vector<std::int64_t>& expert_rows = lr.expert_rows[static_cast<std::size_t>(rank_)];
  const double n = static_cast<double>(tokens_), h = model_.hidden, row = h * a_;
  const double sent = static_cast<double>(lr.rows_sent(rank_));
  core::Buffer none;
  if (moe_layer + 1 < model_.moe_layers()) prefetch_experts(moe_layer + 1, false);

  gemm(tokens_, model_.experts, model_.hidden, "gate logits");
  core::GateOp gate;
  gate.tokens = tokens_;
  gate.experts = model_.experts;
  gate.top_k = model_.top_k;
  last_compute_ = rt_.compute(core::streams::kCompute, gate, "gate top-k");
  if (policy_.dispatch == Dispatch::counts) {
    // Every rank tells every peer how many rows each of its experts will get; the host needs these numbers to
    // size the all-to-all(v), so it waits for them (the paper's 2D prefetch reads the same counts).
    std::vector<std::uint64_t> counts(static_cast<std::size_t>(layout_.ep),
                                      8u * static_cast<std::uint64_t>(layout_.local_experts));
    rt_.stream_wait(core::streams::kComm, last_compute_);
    rt_.wait(rt_.all_to_all(core::streams::kComm, ep_group_, none, counts, none, counts, core::CollectiveAlgo::direct));
  }
  elementwise(sent * row + n * 8, sent * row, "permute");
  const core::Event combined = through_experts(moe_layer, false, send, recv, expert_rows).second;
  rt_.stream_wait(core::streams::kCompute, combined);
  elementwise(sent * row + n * row + n * model_.top_k * 4.0, n * row, "combine + residual");
}

void RankTrainer::moe_backward(int moe_layer) {
  const LayerRouting& lr = mb_->layers[static_cast<std::size_t>(moe_layer)];
  const std::vector<std::int64_t> send = lr.send_rows[static_cast<std::size_t>(rank_)];
  const std::vector<std::int64_t> recv = lr.recv_rows(layout_, rank_);
  const std::vector<std::int64_t>& expert_rows = lr.expert_rows[static_cast<std::size_t>(rank_)];
  const double n = static_cast<double>(tokens_), h = model_.hidden, row = h * a_;
  const double sent = static_cast<double>(lr.rows_sent(rank_));
  if (moe_layer > 0) prefetch_experts(moe_layer - 1, true);

  // Gradients of the combined rows travel to the experts (the dispatch direction) ...
  elementwise(n * row + sent * row, sent * row, "combine bwd");
  // ... and the gradients of the dispatched rows come back (the combine direction).
  const auto [grads, returned] = through_experts(moe_layer, true, send, recv, expert_rows);
  if (policy_.offload != Offload::none)
    offload_expert_update(moe_layer, grads);
  else
    add_expert_grads(grads);
  rt_.stream_wait(core::streams::kCompute, returned);
  elementwise(sent * row, n * row, "permute bwd");
  gemm_backward(tokens_, model_.experts, model_.hidden, "gate dgrad+wgrad");
}

std::pair<core::Event, core::Event> RankTrainer::through_experts(int moe_layer, bool backward,
                                                                 const std::vector<std::int64_t>& send,
                                                                 const std::vector<std::int64_t>& recv,
                                                                 const std::vector<std::int64_t>& expert_rows) {
  // Rows go to their experts in `chunks` all-to-alls; each chunk's expert FFN starts when it has arrived, and its
  // rows return as soon as it is computed, so communication of one chunk overlaps computation of another.
  const int chunks = policy_.overlap_chunks;
  core::Buffer none;
  rt_.stream_wait(core::streams::kComm, last_compute_);
  std::vector<core::Event> arrived, computed;
  for (int c = 0; c < chunks; ++c)
    arrived.push_back(rt_.all_to_all(core::streams::kComm, ep_group_, none, chunk_bytes(send, c, chunks), none,
                                     chunk_bytes(recv, c, chunks), a2a_algo_));
  rt_.stream_wait(core::streams::kCompute, experts_ready(moe_layer, backward));
  for (int c = 0; c < chunks; ++c) {
    rt_.stream_wait(core::streams::kCompute, arrived[static_cast<std::size_t>(c)]);
    expert_ffn(expert_rows, backward, c, chunks);
    computed.push_back(last_compute_);
  }
  const core::Event experts_done = last_compute_;
  slot_free_[static_cast<std::size_t>(moe_layer % 2)] = experts_done;
  core::Event returned;
  for (int c = 0; c < chunks; ++c) {
    rt_.stream_wait(core::streams::kComm, computed[static_cast<std::size_t>(c)]);
    returned = rt_.all_to_all(core::streams::kComm, ep_group_, none, chunk_bytes(recv, c, chunks), none,
                              chunk_bytes(send, c, chunks), a2a_algo_);
  }
  return {experts_done, returned};
}

}  // namespace moesys::policies::training
