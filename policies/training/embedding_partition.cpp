// Column-partitioned embedding (paper-notes "Embedding partition"): each rank owns hidden / world columns of the
// token table for every token id. Lookup: all-to-all of ids (every rank needs every rank's ids), local lookup of
// its columns, all-to-all of the looked-up slices back to the token owners. Backward: all-to-all of the gradient
// slices to the column owners, who accumulate them into their complete shard (no all-reduce of the table). The
// tied output projection streams the table in chunks of the fusion bucket size: all-gather a chunk of rows, use
// it, and (backward) reduce-scatter its gradient back to the column owners.
//
// This policy still runs in the simulator only: its kernels are sized (ElementwiseOp) and its collectives carry
// no tensors, so the real runtimes refuse it (RankTrainer::run says so before the first step).
#include <algorithm>
#include <cmath>

#include "policies/training/rank_trainer.hpp"

namespace moesys::policies::training {

namespace {
std::int64_t table_chunks(const core::ModelConfig& m, const TrainingPolicy& p) {
  const double table = static_cast<double>(m.vocab) * m.hidden * core::dtype_bytes(m.dtype);
  return p.bucket_bytes > 0 ? std::max<std::int64_t>(1, static_cast<std::int64_t>(std::ceil(table / p.bucket_bytes)))
                            : 1;
}
}  // namespace

core::Event RankTrainer::sized_kernel(double bytes_read, double bytes_written, const char* name) {
  core::ElementwiseOp op;
  op.bytes_read = static_cast<std::uint64_t>(bytes_read);
  op.bytes_written = static_cast<std::uint64_t>(bytes_written);
  return run(op, name);
}

void RankTrainer::partitioned_embedding_forward() {
  const double n = static_cast<double>(tokens_), h = model_.hidden;
  const int w = layout_.world;
  const double cols = h / w;
  std::vector<std::uint64_t> ids(static_cast<std::size_t>(w), static_cast<std::uint64_t>(4 * n)), slices;
  const core::Buffer none;
  rt_.stream_wait(core::streams::kComm, last_compute_);
  core::Event e = rt_.all_to_all(core::streams::kComm, world_, none, ids, none, ids, core::CollectiveAlgo::direct);
  rt_.stream_wait(core::streams::kCompute, e);
  double all_tokens = 0;
  for (auto t : mb_->tokens) all_tokens += static_cast<double>(t);
  sized_kernel(all_tokens * cols * a_ + all_tokens * 4, all_tokens * cols * a_, "embedding lookup (columns)");
  for (int j = 0; j < w; ++j)
    slices.push_back(
        static_cast<std::uint64_t>(static_cast<double>(mb_->tokens[static_cast<std::size_t>(j)]) * cols * a_));
  rt_.stream_wait(core::streams::kComm, last_compute_);
  e = rt_.all_to_all(core::streams::kComm, world_, none, slices, none, slices, core::CollectiveAlgo::direct);
  rt_.stream_wait(core::streams::kCompute, e);
  sized_kernel(n * h * a_, n * h * a_, "embedding assemble + positions");
}

void RankTrainer::partitioned_embedding_backward() {
  const double n = static_cast<double>(tokens_), h = model_.hidden;
  const int w = layout_.world;
  const double cols = h / w;
  std::vector<std::uint64_t> slices(static_cast<std::size_t>(w), static_cast<std::uint64_t>(n * cols * a_));
  const core::Buffer none;
  rt_.stream_wait(core::streams::kComm, last_compute_);
  core::Event e =
      rt_.all_to_all(core::streams::kComm, world_, none, slices, none, slices, core::CollectiveAlgo::direct);
  rt_.stream_wait(core::streams::kCompute, e);
  double all_tokens = 0;
  for (auto t : mb_->tokens) all_tokens += static_cast<double>(t);
  sized_kernel(all_tokens * cols * a_ + all_tokens * 4, all_tokens * cols * a_, "embedding grad (columns)");
}

void RankTrainer::partitioned_logits(bool backward) {
  const double n = static_cast<double>(tokens_), v = model_.vocab;
  const std::int64_t h = model_.hidden, chunks = table_chunks(model_, policy_);
  if (backward) sized_kernel(n * v * 4, n * v * a_, "softmax cross-entropy bwd");
  const core::Buffer none;
  std::vector<core::Event> used;
  for (std::int64_t c = 0; c < chunks; ++c) {
    const std::int64_t rows = model_.vocab / chunks + (c < model_.vocab % chunks ? 1 : 0);
    const auto bytes = static_cast<std::uint64_t>(static_cast<double>(rows) * h * a_);
    if (c >= 2) rt_.stream_wait(kGatherStream, used[static_cast<std::size_t>(c - 2)]);  // two chunk buffers
    core::Event g = rt_.all_gather(kGatherStream, world_, none, none, bytes);
    rt_.stream_wait(core::streams::kCompute, g);
    core::GemmOp op;
    op.m = tokens_, op.n = backward ? h : rows, op.k = backward ? rows : h, op.batch = backward ? 2 : 1;
    op.dtype = dtype_;
    used.push_back(run(op, backward ? "logits dgrad+wgrad (table chunk)" : "logits (table chunk)"));
    if (!backward) continue;
    // The chunk's gradient goes back to the column owners on the reduction stream.
    rt_.stream_wait(core::streams::kComm2, used.back());
    last_reduce_ = rt_.reduce_scatter(core::streams::kComm2, world_, none, none, bytes, dtype_);
  }
  if (!backward) sized_kernel(n * v * a_, n * v * 4, "softmax cross-entropy");
}

}  // namespace moesys::policies::training
