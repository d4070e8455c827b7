// Context parallelism (layout.hpp), as Llama 3 trains long sequences: each rank of a context-parallel group holds one
// contiguous chunk of every sequence of its micro-batch and computes that chunk's queries; attention all-gathers the
// group's keys and values, lays them out position-major ([position][sequence], the layout of a KV cache) and runs the
// chunk's queries over the positions up to the chunk's end (the causal offset). Backward computes the gradients of
// those keys and values and reduce-scatters them to their owners. Contiguous chunks leave the last member the most
// work (chunk c sees c + 1 chunks of keys); Megatron's zigzag order is not modelled.
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

void RankTrainer::gather_sequence(const core::Buffer& mine, const core::Buffer& landing, const core::Buffer& whole,
                                  std::int64_t width) {
  const std::int64_t chunk = model_.seq_len / layout_.cp, seqs = tokens_ / chunk, cp = layout_.cp;
  const std::uint64_t part = rows_bytes(tokens_, width, a_), all = part * static_cast<std::uint64_t>(cp);
  rt_.stream_wait(kComm, last_compute_);
  rt_.stream_wait(kCompute, rt_.all_gather(kComm, cp_group_, mine.slice(0, part), landing.slice(0, all), all));
  // Chunk c: [sequence][position] -> [position][sequence]; only the chunks up to this rank's are read.
  for (std::int64_t c = 0; c <= layout_.cp_index(rank_); ++c)
    tensor(ops::block_transpose(row_range(landing, c * tokens_, tokens_, width, a_),
                                row_range(whole, c * tokens_, tokens_, width, a_), seqs, chunk, width),
           "context gather layout");
}

void RankTrainer::scatter_sequence(const core::Buffer& whole, const core::Buffer& landing, const core::Buffer& mine,
                                   std::int64_t width) {
  const std::int64_t chunk = model_.seq_len / layout_.cp, seqs = tokens_ / chunk, cp = layout_.cp;
  const std::int64_t own = layout_.cp_index(rank_);
  for (std::int64_t c = 0; c <= own; ++c)
    tensor(ops::block_transpose(row_range(whole, c * tokens_, tokens_, width, a_),
                                row_range(landing, c * tokens_, tokens_, width, a_), chunk, seqs, width),
           "context scatter layout");
  if (own + 1 < cp)  // later chunks' keys are not seen by this rank's queries: no gradient from here
    tensor(ops::fill(row_range(landing, (own + 1) * tokens_, (cp - own - 1) * tokens_, width, a_),
                     (cp - own - 1) * tokens_ * width),
           "context grad zero");
  const std::uint64_t part = rows_bytes(tokens_, width, a_), all = part * static_cast<std::uint64_t>(cp);
  rt_.stream_wait(kComm, last_compute_);
  rt_.stream_wait(kCompute,
                  rt_.reduce_scatter(kComm, cp_group_, landing.slice(0, all), mine.slice(0, part), all, dtype_));
}

void RankTrainer::context_attention(const Qkv& x, const core::Buffer& ctx) {
  const Workspace& w = st_.ws;
  const std::int64_t chunk = model_.seq_len / layout_.cp, seqs = tokens_ / chunk;
  gather_sequence(x.k, w.cp_land_k, w.cp_k, model_.k_width());
  gather_sequence(x.v, w.cp_land_v, w.cp_v, model_.kv_width());
  core::AttentionOp op = attention_op(seqs, chunk, {x.q, w.cp_k, w.cp_v}, ctx);
  op.seq_kv = (layout_.cp_index(rank_) + 1) * chunk;
  op.kv_position_major = true;
  run(op, "attention");
}

void RankTrainer::context_attention_backward(const Qkv& x, const core::Buffer& ctx, const core::Buffer& dctx,
                                             const Qkv& d) {
  const Workspace& w = st_.ws;
  const std::int64_t chunk = model_.seq_len / layout_.cp, seqs = tokens_ / chunk;
  const std::int64_t kw = model_.k_width(), vw = model_.kv_width();
  gather_sequence(x.k, w.cp_land_k, w.cp_k, kw);  // gathered again: nothing of the forward's is kept
  gather_sequence(x.v, w.cp_land_v, w.cp_v, vw);
  // The kernel writes the gradients of every position up to the chunk's end (the rows the scatter reads).
  core::AttentionOp op = attention_op(seqs, chunk, {x.q, w.cp_k, w.cp_v}, ctx);
  op.seq_kv = (layout_.cp_index(rank_) + 1) * chunk;
  op.kv_position_major = true;
  op.backward = true;
  op.d_o = dctx, op.d_q = d.q, op.d_k = w.cp_dk, op.d_v = w.cp_dv;
  run(op, "attention bwd");
  scatter_sequence(w.cp_dk, w.cp_land_k, d.k, kw);
  scatter_sequence(w.cp_dv, w.cp_land_v, d.v, vw);
}

}  // namespace moesys::policies::training
