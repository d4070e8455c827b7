// Context parallelism (layout.hpp), in Megatron's load-balanced (zigzag) order: every sequence is cut into 2 x cp
// blocks of h = seq_len / (2 cp) positions, and member c of a context-parallel group holds blocks c and 2 cp - 1 - c
// of every sequence of its micro-batch (its rows: block c of each sequence, then block 2 cp - 1 - c of each). Under a
// causal mask a query block at position block i attends to i + 1 blocks of keys, so every member's two halves see
// 2 cp + 1 blocks in all and the group's attention work is even (contiguous chunks left the last member cp times the
// first's). Attention all-gathers the group's keys and values, lays them out position-major ([position][sequence],
// the layout of a KV cache) and runs each half's queries over the positions up to the half's end (the causal
// offset). Backward computes the gradients of those keys and values (the two halves' contributions summed) and
// reduce-scatters them to their owners.
#include "model/ops.hpp"
#include "policies/training/rank_trainer.hpp"

namespace moesys::policies::training {

namespace ops = moesys::model::ops;
using core::streams::kComm;
using core::streams::kCompute;

namespace {
/// Rows [first, first + rows) of `b`, each `width` elements of `bytes_per` bytes.
core::Buffer row_range(const core::Buffer& b, std::int64_t first, std::int64_t rows, std::int64_t width,
                       double bytes_per) {
  return b.slice(rows_bytes(first, width, bytes_per), rows_bytes(rows, width, bytes_per));
}
}  // namespace

std::int64_t RankTrainer::cp_half() const { return model_.seq_len / (2 * layout_.cp); }

int RankTrainer::cp_block(int member, int half) const { return half == 0 ? member : 2 * layout_.cp - 1 - member; }

void RankTrainer::gather_sequence(const core::Buffer& mine, const core::Buffer& landing, const core::Buffer& whole,
                                  std::int64_t width) {
  const std::int64_t h = cp_half(), rows = tokens_ / 2, seqs = rows / h;
  const std::uint64_t part = rows_bytes(tokens_, width, a_), all = part * static_cast<std::uint64_t>(layout_.cp);
  rt_.stream_wait(kComm, last_compute_);
  rt_.stream_wait(kCompute, rt_.all_gather(kComm, cp_group_, mine.slice(0, part), landing.slice(0, all), all));
  // Member c's half j: [sequence][position] -> block cp_block(c, j) of [position][sequence]; only the blocks up to
  // this rank's later half are read.
  const int seen = cp_block(layout_.cp_index(rank_), 1) + 1;
  for (int c = 0; c < layout_.cp; ++c)
    for (int j = 0; j < 2; ++j)
      if (const int block = cp_block(c, j); block < seen)
        tensor(ops::block_transpose(row_range(landing, (2 * c + j) * rows, rows, width, a_),
                                    row_range(whole, block * rows, rows, width, a_), seqs, h, width),
               "context gather layout");
}

void RankTrainer::scatter_sequence(const core::Buffer& whole, const core::Buffer& landing, const core::Buffer& mine,
                                   std::int64_t width) {
  const std::int64_t h = cp_half(), rows = tokens_ / 2, seqs = rows / h;
  const int seen = cp_block(layout_.cp_index(rank_), 1) + 1;
  for (int c = 0; c < layout_.cp; ++c)
    for (int j = 0; j < 2; ++j) {
      const int block = cp_block(c, j);
      const core::Buffer to = row_range(landing, (2 * c + j) * rows, rows, width, a_);
      if (block < seen)
        tensor(ops::block_transpose(row_range(whole, block * rows, rows, width, a_), to, h, seqs, width),
               "context scatter layout");
      else  // later blocks' keys are not seen by this rank's queries: no gradient from here
        tensor(ops::fill(to, rows * width), "context grad zero");
    }
  const std::uint64_t part = rows_bytes(tokens_, width, a_), all = part * static_cast<std::uint64_t>(layout_.cp);
  rt_.stream_wait(kComm, last_compute_);
  rt_.stream_wait(kCompute,
                  rt_.reduce_scatter(kComm, cp_group_, landing.slice(0, all), mine.slice(0, part), all, dtype_));
}

core::AttentionOp RankTrainer::context_half_op(const Qkv& x, const core::Buffer& ctx, int half) const {
  const std::int64_t h = cp_half(), rows = tokens_ / 2, seqs = rows / h;
  const Workspace& w = st_.ws;
  auto own = [&](const core::Buffer& b, std::int64_t width) { return row_range(b, half * rows, rows, width, a_); };
  core::AttentionOp op = attention_op(seqs, h, {own(x.q, model_.q_width()), w.cp_k, w.cp_v}, own(ctx, model_.ctx_width()));
  op.seq_kv = (cp_block(layout_.cp_index(rank_), half) + 1) * h;
  op.kv_position_major = true;
  return op;
}

void RankTrainer::context_attention(const Qkv& x, const core::Buffer& ctx) {
  const Workspace& w = st_.ws;
  gather_sequence(x.k, w.cp_land_k, w.cp_k, model_.k_width());
  gather_sequence(x.v, w.cp_land_v, w.cp_v, model_.kv_width());
  for (int half = 0; half < 2; ++half) run(context_half_op(x, ctx, half), "attention");
}

void RankTrainer::context_attention_backward(const Qkv& x, const core::Buffer& ctx, const core::Buffer& dctx,
                                             const Qkv& d) {
  const Workspace& w = st_.ws;
  const std::int64_t kw = model_.k_width(), vw = model_.kv_width(), rows = tokens_ / 2;
  gather_sequence(x.k, w.cp_land_k, w.cp_k, kw);  // gathered again: nothing of the forward's is kept
  gather_sequence(x.v, w.cp_land_v, w.cp_v, vw);
  // Each kernel writes the gradients of every position up to its half's end: the later half first (it reaches
  // further, so it writes every row the scatter reads), then the earlier half adds its share.
  for (int half = 1; half >= 0; --half) {
    core::AttentionOp op = context_half_op(x, ctx, half);
    op.backward = true;
    op.accumulate_kv_grads = half == 0;
    op.d_o = row_range(dctx, half * rows, rows, model_.ctx_width(), a_);
    op.d_q = row_range(d.q, half * rows, rows, model_.q_width(), a_);
    op.d_k = w.cp_dk, op.d_v = w.cp_dv;
    run(op, "attention bwd");
  }
  scatter_sequence(w.cp_dk, w.cp_land_k, d.k, kw);
  scatter_sequence(w.cp_dv, w.cp_land_v, d.v, vw);
}

}  // namespace moesys::policies::training
