// Gradient synchronisation and the post-step parameter all-gathers, through fusion buckets: gradients are packed
// into a buffer of `bucket_bytes` and reduced when it fills (bucket_bytes = 0: one collective per tensor).
//   ddp    all-reduce over all ranks
//   zero2  reduce-scatter over all ranks; after the optimizer, all-gather of the updated fp16 parameters
//   zero3  reduce-scatter inside the node (NVLink), then over the rail (same local GPU on every node) on the
//          node shard; after the optimizer, all-gather over the rail back to the node shard
// Expert gradients are reduced over the expert replicas (expert-data-parallel group) the same way.
// With grad_overlap the reductions run on their own stream while backward continues; without it the host waits
// for each (DeepSpeed's overlap_comm = false), so backward stalls behind every bucket.
#include <algorithm>
#include <cmath>

#include "policies/training/model_costs.hpp"
#include "policies/training/rank_trainer.hpp"

namespace moesys::policies::training {

namespace {
/// Calls fn(bytes) for every bucket of the tensors (bytes each), packed in order.
template <typename Fn>
void for_each_bucket(const std::vector<double>& tensors, double bucket, Fn fn) {
  double pending = 0;
  for (double t : tensors) {
    if (bucket <= 0) {
      fn(t);
      continue;
    }
    pending += t;
    if (pending >= bucket) {
      fn(pending);
      pending = 0;
    }
  }
  if (pending > 0) fn(pending);
}
}  // namespace

std::vector<std::int64_t> RankTrainer::dense_tensors_in_order() const {
  std::vector<std::int64_t> all;
  for (int l = model_.layers - 1; l >= 0; --l)
    for (auto t : layer_dense_tensors(model_, l)) all.push_back(t);
  auto emb = embedding_tensors(model_);
  if (policy_.embedding == Embedding::partition) emb.erase(emb.begin());
  all.insert(all.end(), emb.begin(), emb.end());
  return all;
}

void RankTrainer::issue_dense_bucket(double bytes) {
  if (layout_.world == 1 || bytes <= 0) return;
  core::Buffer none;
  const auto b = static_cast<std::uint64_t>(bytes);
  rt_.stream_wait(core::streams::kComm2, last_compute_);
  switch (policy_.dense) {
    case DenseSharding::ddp:
      last_reduce_ = rt_.all_reduce(core::streams::kComm2, world_, none, b, model_.dtype);
      break;
    case DenseSharding::zero2:
      last_reduce_ = rt_.reduce_scatter(core::streams::kComm2, world_, none, none, b, model_.dtype);
      break;
    case DenseSharding::zero3:
      if (node_group_.size() > 1)
        last_reduce_ = rt_.reduce_scatter(core::streams::kComm2, node_group_, none, none, b, model_.dtype);
      if (rail_group_.size() > 1)
        last_reduce_ =
            rt_.reduce_scatter(core::streams::kComm2, rail_group_, none, none,
                               static_cast<std::uint64_t>(std::ceil(bytes / node_group_.size())), model_.dtype);
      break;
  }
  if (!policy_.grad_overlap) rt_.wait(last_reduce_);
}

void RankTrainer::issue_expert_bucket(double bytes) {
  if (layout_.edp == 1 || bytes <= 0) return;
  core::Buffer none;
  const auto b = static_cast<std::uint64_t>(bytes);
  rt_.stream_wait(core::streams::kComm2, last_compute_);
  if (policy_.dense == DenseSharding::ddp || policy_.offload != Offload::none)
    last_reduce_ = rt_.all_reduce(core::streams::kComm2, edp_group_, none, b, model_.dtype);
  else
    last_reduce_ = rt_.reduce_scatter(core::streams::kComm2, edp_group_, none, none, b, model_.dtype);
  if (!policy_.grad_overlap) rt_.wait(last_reduce_);
}

void RankTrainer::add_dense_grads(const std::vector<std::int64_t>& tensors, core::Event) {
  const double g = model_.grad_bytes_per_param();
  for (auto it = tensors.rbegin(); it != tensors.rend(); ++it) {  // backward produces them last to first
    const double bytes = g * static_cast<double>(*it);
    if (policy_.bucket_bytes <= 0) {
      issue_dense_bucket(bytes);
      continue;
    }
    dense_bucket_ += bytes;
    if (dense_bucket_ >= policy_.bucket_bytes) {
      issue_dense_bucket(dense_bucket_);
      dense_bucket_ = 0;
    }
  }
}

void RankTrainer::add_expert_grads(core::Event) {
  if (!sync_grads_ || layout_.edp == 1) return;
  const double g = model_.grad_bytes_per_param();
  for (int e = 0; e < layout_.local_experts; ++e)
    for (auto t : expert_tensors(model_)) {
      const double bytes = g * static_cast<double>(t);
      if (policy_.bucket_bytes <= 0) {
        issue_expert_bucket(bytes);
        continue;
      }
      expert_bucket_ += bytes;
      if (expert_bucket_ >= policy_.bucket_bytes) {
        issue_expert_bucket(expert_bucket_);
        expert_bucket_ = 0;
      }
    }
}

void RankTrainer::flush_grads() {
  issue_dense_bucket(dense_bucket_);
  issue_expert_bucket(expert_bucket_);
  dense_bucket_ = expert_bucket_ = 0;
}

void RankTrainer::gather_updated_params(core::Event after) {
  core::Buffer none;
  rt_.stream_wait(core::streams::kComm2, after);
  auto gather = [&](const core::Group& group, double divisor, const std::vector<std::int64_t>& tensors) {
    if (group.size() <= 1) return;
    std::vector<double> bytes;
    for (auto t : tensors) bytes.push_back(std::ceil(a_ * static_cast<double>(t) / divisor));
    for_each_bucket(bytes, policy_.bucket_bytes, [&](double b) {
      rt_.all_gather(core::streams::kComm2, group, none, none, static_cast<std::uint64_t>(b));
    });
  };
  const std::vector<std::int64_t> dense = dense_tensors_in_order();
  if (policy_.dense == DenseSharding::zero2) gather(world_, 1, dense);
  if (policy_.dense == DenseSharding::zero3) gather(rail_group_, node_group_.size(), dense);
  if (policy_.dense != DenseSharding::ddp && policy_.offload == Offload::none && layout_.edp > 1) {
    std::vector<std::int64_t> experts;
    for (int i = 0; i < model_.moe_layers() * layout_.local_experts; ++i)
      for (auto t : expert_tensors(model_)) experts.push_back(t);
    gather(edp_group_, 1, experts);
  }
}

}  // namespace moesys::policies::training
