// The dense parts of a transformer layer, the embedding and the logits, as kernels on the compute stream.
// GEMM shapes: a forward Y[tokens, out] = X[tokens, in] W[in, out] is GemmOp{m = tokens, n = out, k = in}; its
// backward is dgrad {tokens, in, out} plus wgrad {in, out, tokens}.
#include <algorithm>
#include <cmath>

#include "policies/training/rank_trainer.hpp"

namespace moesys::policies::training {

void RankTrainer::attention_forward() {
  const double n = static_cast<double>(tokens_), h = model_.hidden;
  elementwise(n * h * a_, n * h * a_, "layernorm");
  gemm(tokens_, 3 * std::int64_t{model_.hidden}, model_.hidden, "qkv");
  attention_kernel(tokens_, false);
  gemm(tokens_, model_.hidden, model_.hidden, "attention out");
  elementwise(3 * n * h * a_, 2 * n * h * a_, "residual+layernorm");  // residual sum and the FFN's layernorm
}

void RankTrainer::attention_backward() {
  const double n = static_cast<double>(tokens_), h = model_.hidden;
  const std::int64_t hi = model_.hidden;
  elementwise(3 * n * h * a_, 2 * n * h * a_, "residual+layernorm bwd");
  gemm_backward(tokens_, hi, hi, "attention out dgrad+wgrad");
  attention_kernel(tokens_, true);
  gemm_backward(tokens_, 3 * hi, hi, "qkv dgrad+wgrad");
  elementwise(2 * n * h * a_, n * h * a_, "layernorm bwd");
}

void RankTrainer::dense_ffn_forward() {
  const double n = static_cast<double>(tokens_), f = model_.ffn_hidden();
  gemm(tokens_, model_.ffn_hidden(), model_.hidden, "ffn in");
  elementwise(n * f * a_, n * f * a_, "gelu");
  gemm(tokens_, model_.hidden, model_.ffn_hidden(), "ffn out");
}

void RankTrainer::dense_ffn_backward() {
  const double n = static_cast<double>(tokens_), f = model_.ffn_hidden();
  const std::int64_t h = model_.hidden, fi = model_.ffn_hidden();
  gemm_backward(tokens_, h, fi, "ffn out dgrad+wgrad");
  elementwise(2 * n * f * a_, n * f * a_, "gelu bwd");
  gemm_backward(tokens_, fi, h, "ffn in dgrad+wgrad");
}

// Column-partitioned embedding (paper-notes "Embedding partition"): each rank owns hidden / world columns of the
// table for every token id. Lookup: all-to-all of ids (every rank needs every rank's ids), local lookup of its
// columns, all-to-all of the looked-up slices back to the token owners. Backward: all-to-all of the gradient
// slices to the column owners, who accumulate them into their complete shard (no all-reduce of the table).
void RankTrainer::embedding_forward() {
  const double n = static_cast<double>(tokens_), h = model_.hidden;
  if (policy_.embedding == Embedding::dense) {
    elementwise(n * h * a_ + n * 8, n * h * a_, "embedding lookup");
    return;
  }
  const int w = layout_.world;
  const double cols = h / w;
  std::vector<std::uint64_t> ids(static_cast<std::size_t>(w), static_cast<std::uint64_t>(4 * n)), slices;
  core::Buffer none;
  rt_.stream_wait(core::streams::kComm, last_compute_);
  core::Event e = rt_.all_to_all(core::streams::kComm, world_, none, ids, none, ids, core::CollectiveAlgo::direct);
  rt_.stream_wait(core::streams::kCompute, e);
  double all_tokens = 0;
  for (auto t : mb_->tokens) all_tokens += static_cast<double>(t);
  elementwise(all_tokens * cols * a_ + all_tokens * 4, all_tokens * cols * a_, "embedding lookup (columns)");
  for (int j = 0; j < w; ++j)
    slices.push_back(
        static_cast<std::uint64_t>(static_cast<double>(mb_->tokens[static_cast<std::size_t>(j)]) * cols * a_));
  rt_.stream_wait(core::streams::kComm, last_compute_);
  e = rt_.all_to_all(core::streams::kComm, world_, none, slices, none, slices, core::CollectiveAlgo::direct);
  rt_.stream_wait(core::streams::kCompute, e);
  elementwise(n * h * a_, n * h * a_, "embedding assemble + positions");
}

void RankTrainer::embedding_backward() {
  const double n = static_cast<double>(tokens_), h = model_.hidden;
  if (policy_.embedding == Embedding::dense) {
    elementwise(n * h * a_ + n * 8, n * h * a_, "embedding grad scatter-add");
    return;
  }
  const int w = layout_.world;
  const double cols = h / w;
  std::vector<std::uint64_t> slices(static_cast<std::size_t>(w), static_cast<std::uint64_t>(n * cols * a_));
  core::Buffer none;
  rt_.stream_wait(core::streams::kComm, last_compute_);
  core::Event e =
      rt_.all_to_all(core::streams::kComm, world_, none, slices, none, slices, core::CollectiveAlgo::direct);
  rt_.stream_wait(core::streams::kCompute, e);
  double all_tokens = 0;
  for (auto t : mb_->tokens) all_tokens += static_cast<double>(t);
  elementwise(all_tokens * cols * a_ + all_tokens * 4, all_tokens * cols * a_, "embedding grad (columns)");
}

namespace {
/// The tied output projection under the partition streams the table in chunks of the fusion bucket size:
/// all-gather a chunk of rows, use it, and (backward) reduce-scatter its gradient back to the column owners.
std::int64_t table_chunks(const core::ModelConfig& m, const TrainingPolicy& p) {
  const double table = static_cast<double>(m.vocab) * m.hidden * core::dtype_bytes(m.dtype);
  return p.bucket_bytes > 0 ? std::max<std::int64_t>(1, static_cast<std::int64_t>(std::ceil(table / p.bucket_bytes)))
                            : 1;
}
}  // namespace

void RankTrainer::logits_forward() {
  const double n = static_cast<double>(tokens_), v = model_.vocab;
  if (policy_.embedding == Embedding::dense) {
    gemm(tokens_, model_.vocab, model_.hidden, "logits");
  } else {
    const std::int64_t chunks = table_chunks(model_, policy_);
    core::Buffer none;
    std::vector<core::Event> used;
    for (std::int64_t c = 0; c < chunks; ++c) {
      const std::int64_t rows = model_.vocab / chunks + (c < model_.vocab % chunks ? 1 : 0);
      if (c >= 2) rt_.stream_wait(kGatherStream, used[static_cast<std::size_t>(c - 2)]);  // two chunk buffers
      core::Event g = rt_.all_gather(kGatherStream, world_, none, none,
                                     static_cast<std::uint64_t>(static_cast<double>(rows) * model_.hidden * a_));
      rt_.stream_wait(core::streams::kCompute, g);
      used.push_back(gemm(tokens_, rows, model_.hidden, "logits (table chunk)"));
    }
  }
  elementwise(n * v * a_, n * v * 4, "softmax cross-entropy");
}

void RankTrainer::logits_backward() {
  const double n = static_cast<double>(tokens_), v = model_.vocab;
  const std::int64_t h = model_.hidden;
  elementwise(n * v * 4, n * v * a_, "softmax cross-entropy bwd");
  if (policy_.embedding == Embedding::dense) {
    gemm_backward(tokens_, model_.vocab, h, "logits dgrad+wgrad");
    return;
  }
  const std::int64_t chunks = table_chunks(model_, policy_);
  core::Buffer none;
  std::vector<core::Event> used;
  for (std::int64_t c = 0; c < chunks; ++c) {
    const std::int64_t rows = model_.vocab / chunks + (c < model_.vocab % chunks ? 1 : 0);
    const auto bytes = static_cast<std::uint64_t>(static_cast<double>(rows) * h * a_);
    if (c >= 2) rt_.stream_wait(kGatherStream, used[static_cast<std::size_t>(c - 2)]);
    core::Event g = rt_.all_gather(kGatherStream, world_, none, none, bytes);
    rt_.stream_wait(core::streams::kCompute, g);
    used.push_back(gemm_backward(tokens_, rows, h, "logits dgrad+wgrad (table chunk)"));
    // The chunk's gradient goes back to the column owners on the reduction stream.
    rt_.stream_wait(core::streams::kComm2, used.back());
    last_reduce_ = rt_.reduce_scatter(core::streams::kComm2, world_, none, none, bytes, model_.dtype);
  }
}

}  // namespace moesys::policies::training
