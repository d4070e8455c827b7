// Column-partitioned embedding (paper-notes "Embedding partition"): each rank owns hidden / world columns of the
// token table for every token id (RankState::shard), so the table is neither replicated nor all-reduced.
//   Lookup     all-to-all of ids (every owner needs every rank's ids), local gather of its columns for all of
//              them, all-to-all of the looked-up columns back to the token owners, who interleave them into rows
//              and add the positions.
//   Logits     the tied output projection streams the table in chunks of about one fusion bucket: all-gather a
//              chunk's columns from their owners (one chunk ahead), put them row-major, and compute the chunk's
//              logits transposed ([rows][tokens], so that a chunk is contiguous whatever its size).
//   Backward   per chunk (gathered again): the input gradient accumulates over chunks; the chunk's weight
//              gradient, computed transposed so that each owner's columns are contiguous, is reduce-scattered to
//              the owners, who add it into their shard's gradient. The lookup's gradient goes back to the column
//              owners by all-to-all and is scatter-added into the shard: no all-reduce of the table.
// Tensor layouts: shard [vocab][cols]; gathered chunk [world][rows][cols]; the chunk row-major [rows][world][cols]
// = [rows][hidden]; its gradient [hidden][rows] = [world][cols][rows].
#include "model/ops.hpp"
#include "policies/training/model_costs.hpp"
#include "policies/training/rank_trainer.hpp"

namespace moesys::policies::training {

namespace ops = moesys::model::ops;
using core::streams::kComm;
using core::streams::kComm2;
using core::streams::kCompute;

namespace {
std::uint64_t bytes_of(double elems, double per) { return static_cast<std::uint64_t>(elems * per); }
}  // namespace

void RankTrainer::upload_partition_positions() {
  std::vector<std::int32_t> pos;
  if (real_) {
    pos.resize(static_cast<std::size_t>(st_.max_tokens));
    for (std::size_t t = 0; t < pos.size(); ++t) pos[t] = static_cast<std::int32_t>(static_cast<std::int64_t>(t) % model_.seq_len);
  }
  rt_.stream_wait(kCompute, upload_ints(st_.shard.positions, pos, static_cast<std::uint64_t>(st_.max_tokens) * 4));
}

std::vector<std::uint64_t> RankTrainer::per_peer_bytes(double per_token) const {
  std::vector<std::uint64_t> b;
  for (auto t : mb_->tokens) b.push_back(bytes_of(static_cast<double>(t), per_token));
  return b;
}

void RankTrainer::partitioned_embedding_forward() {
  const EmbeddingShard& e = st_.shard;
  const std::int64_t n = tokens_, h = model_.hidden, w = layout_.world;
  std::int64_t all_tokens = 0;
  for (auto t : mb_->tokens) all_tokens += t;
  // 1. This rank's ids to every owner; every rank's ids from each.
  rt_.stream_wait(kComm, ids_ready_);
  const std::vector<std::uint64_t> own_ids(static_cast<std::size_t>(w), static_cast<std::uint64_t>(n) * 4);
  core::Event x = rt_.all_to_all(kComm, world_, e.ids, own_ids, e.all_ids, per_peer_bytes(4), core::CollectiveAlgo::direct);
  rt_.stream_wait(kCompute, x);
  // 2. This rank's columns of every token, then back to the token owners.
  tensor(ops::gather_rows(e.params, e.all_ids, e.rows, all_tokens, e.cols, model_.vocab), "embedding lookup (columns)");
  rt_.stream_wait(kComm, last_compute_);
  const std::vector<std::uint64_t> own_cols(static_cast<std::size_t>(w), bytes_of(static_cast<double>(n * e.cols), a_));
  x = rt_.all_to_all(kComm, world_, e.rows, per_peer_bytes(static_cast<double>(e.cols) * a_), e.cols_in, own_cols,
                     core::CollectiveAlgo::direct);
  rt_.stream_wait(kCompute, x);
  // 3. [owner][token][cols] -> [token][hidden], plus positions.
  const core::Buffer out = act_views_.back().out;
  tensor(ops::block_transpose(e.cols_in, out, w, n, e.cols), "embedding assemble");
  tensor(ops::gather_rows(param(0, kPositions), e.positions, st_.ws.dtmp, n, h, model_.seq_len), "embedding positions");
  tensor(ops::add(out, st_.ws.dtmp, out, n * h), "embedding positions");
}

void RankTrainer::partitioned_embedding_backward() {
  const EmbeddingShard& e = st_.shard;
  const std::int64_t n = tokens_, h = model_.hidden, w = layout_.world;
  std::int64_t all_tokens = 0;
  for (auto t : mb_->tokens) all_tokens += t;
  // ws.dx is the gradient of the lookup's output: positions locally, the columns back to their owners.
  tensor(ops::scatter_add_rows(st_.ws.dx, e.positions, grad(0, kPositions), n, h, model_.seq_len), "embedding positions bwd");
  tensor(ops::block_transpose(st_.ws.dx, e.cols_in, n, w, e.cols), "embedding grad split");
  rt_.stream_wait(kComm, last_compute_);
  const std::vector<std::uint64_t> own_cols(static_cast<std::size_t>(w), bytes_of(static_cast<double>(n * e.cols), a_));
  const core::Event x = rt_.all_to_all(kComm, world_, e.cols_in, own_cols, e.rows,
                                       per_peer_bytes(static_cast<double>(e.cols) * a_), core::CollectiveAlgo::direct);
  rt_.stream_wait(kCompute, x);
  rt_.stream_wait(kCompute, last_reduce_);  // the logits' chunk gradients are added into the same shard
  tensor(ops::scatter_add_rows(e.rows, e.all_ids, e.grads, all_tokens, e.cols, model_.vocab), "embedding grad (columns)");
}

core::Event RankTrainer::gather_table_chunk(std::int64_t c) {
  const EmbeddingShard& e = st_.shard;
  const std::int64_t first = c * e.chunk_rows, rows = std::min(e.chunk_rows, model_.vocab - first);
  const auto slot = static_cast<std::size_t>(c % 2);
  rt_.stream_wait(kGatherStream, chunk_free_[slot]);  // the chunk gathered two before has been put row-major
  rt_.stream_wait(kGatherStream, shard_ready_);       // and the shard holds this step's values
  const core::Buffer send = e.params.slice(bytes_of(static_cast<double>(first * e.cols), a_),
                                           bytes_of(static_cast<double>(rows * e.cols), a_));
  const core::Buffer recv = e.gathered[slot].slice(0, bytes_of(static_cast<double>(rows * model_.hidden), a_));
  return rt_.all_gather(kGatherStream, world_, send, recv, recv.bytes);
}

void RankTrainer::partitioned_logits(bool backward) {
  const ModelDtypeGemms output_layer_dtype(*this);
  const EmbeddingShard& e = st_.shard;
  ActivationViews& a = act_views_.back();
  const std::int64_t n = tokens_, h = model_.hidden, V = model_.vocab, w = layout_.world;
  const std::size_t last_layer = act_views_.size() - 2;  // its output feeds the logits
  const core::Buffer x_last = act_views_[last_layer].out;
  // The transposed logits [V][n] (and their gradient) live in the view of the other one: forward computes them
  // into dlogits before the loss overwrites it; backward transposes the gradient into logits, no longer needed.
  const core::Buffer logits_t = backward ? a.logits : a.dlogits;
  if (!backward) {
    norm_forward(x_last, 0, kFinalNorm, a.lnf, a.meanf, a.rstdf, n, "final layernorm");
  } else {
    tensor(ops::block_transpose(a.dlogits, logits_t, n, V, 1), "logits grad transpose");
    if (micro_ == 0)  // the step's first micro-batch: the shard's gradient starts from zero
      tensor(ops::fill(e.grads, V * e.cols), "zero embedding grad");
  }
  core::Event gathered = gather_table_chunk(0);
  for (std::int64_t c = 0; c < e.chunks; ++c) {
    const std::int64_t first = c * e.chunk_rows, rows = std::min(e.chunk_rows, V - first);
    const auto slot = static_cast<std::size_t>(c % 2);
    rt_.stream_wait(kCompute, gathered);
    tensor(ops::block_transpose(e.gathered[slot], e.chunk, w, rows, e.cols), "table chunk assemble");
    chunk_free_[slot] = last_compute_;
    if (c + 1 < e.chunks) gathered = gather_table_chunk(c + 1);  // one chunk ahead
    const core::Buffer chunk_t = logits_t.slice(bytes_of(static_cast<double>(first * n), a_),
                                                bytes_of(static_cast<double>(rows * n), a_));
    if (!backward) {
      gemm(rows, n, h, e.chunk, a.lnf, chunk_t, "logits (table chunk)", false, true);
      continue;
    }
    gemm(n, h, rows, chunk_t, e.chunk, st_.ws.dn, "logits dgrad (table chunk)", true, false, c > 0);
    rt_.stream_wait(kCompute, chunk_grad_free_[slot]);  // its previous reduce-scatter has read it
    gemm(h, rows, n, a.lnf, chunk_t, e.chunk_grad[slot], "logits wgrad (table chunk)", true, true);
    // This rank's columns of the chunk's gradient, [cols][rows] after the reduce-scatter, added into the shard.
    rt_.stream_wait(kComm2, last_compute_);
    const std::uint64_t piece = bytes_of(static_cast<double>(rows * e.cols), a_);
    const core::Buffer recv = e.grad_piece.slice(0, piece), rows_major = e.grad_piece.slice(e.grad_piece.bytes / 2, piece);
    chunk_grad_free_[slot] = rt_.reduce_scatter(kComm2, world_, e.chunk_grad[slot].slice(0, piece * static_cast<std::uint64_t>(w)),
                                                recv, piece * static_cast<std::uint64_t>(w), dtype_);
    rt_.compute(kComm2, ops::with_dtype(ops::block_transpose(recv, rows_major, e.cols, rows, 1), dtype_),
                "embedding grad piece transpose");
    const double g = model_.grad_bytes_per_param();
    const core::Buffer dst = e.grads.slice(bytes_of(static_cast<double>(first * e.cols), g),
                                           bytes_of(static_cast<double>(rows * e.cols), g));
    last_reduce_ = rt_.compute(kComm2, ops::with_dtype(ops::add(dst, rows_major, dst, rows * e.cols), dtype_),
                               "accumulate embedding grad");
  }
  if (!backward) {
    tensor(ops::block_transpose(logits_t, a.logits, V, n, 1), "logits transpose");
    // The loss is the mean over the global batch, as in the replicated path.
    const double scale = 1.0 / (static_cast<double>(n) * layout_.world * plan_.routing.micro_batches);
    tensor(ops::softmax_xent(a.logits, st_.targets, a.dlogits, st_.ws.loss, n, V, scale), "softmax cross-entropy");
    return;
  }
  norm_backward(x_last, 0, kFinalNorm, a.meanf, a.rstdf, st_.ws.dn, st_.ws.dx, n, "final layernorm bwd");
}

}  // namespace moesys::policies::training
