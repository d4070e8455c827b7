// Gradient synchronisation through fusion buckets (rank_state.cpp plans them), and the post-step all-gathers of
// updated parameters:
//   ddp    gradients accumulate in a full buffer; on the last micro-batch each bucket is all-reduced in place
//   zero2  backward writes into rotating bucket buffers; each full bucket is reduce-scattered over all ranks into
//          this rank's partition (every micro-batch, accumulating); after the optimizer, each bucket's updated
//          pieces are all-gathered back into the replicated parameters
//   zero3  one bucket per unit: reduce-scatter inside the node (NVLink) into the node shard, then on the last
//          micro-batch over the rail (same local GPU on every node) into this rank's piece; after the optimizer,
//          all-gather over the rail back into the node shard
//   distributed  (Megatron's distributed optimizer) gradients accumulate in a full buffer like ddp; on the last
//          micro-batch each bucket is reduce-scattered over the data-parallel ranks into this rank's piece; after the
//          optimizer, the updated pieces are all-gathered as with zero2
// With pipeline parallelism the data-parallel ranks are those of this rank's stage (world_).
// Expert gradients are all-reduced over the expert replicas (expert-data-parallel group) on the last micro-batch.
// With grad_overlap the reductions run on their own stream while backward continues; without it the host waits
// for each (DeepSpeed's overlap_comm = false), so backward stalls behind every bucket.
#include <algorithm>

#include "model/ops.hpp"
#include "policies/training/model_costs.hpp"
#include "policies/training/rank_trainer.hpp"

namespace moesys::policies::training {

namespace ops = moesys::model::ops;
using core::streams::kComm2;
using core::streams::kCompute;
using I = std::int64_t;

namespace {
std::uint64_t B(I elems, double per) { return static_cast<std::uint64_t>(static_cast<double>(elems) * per); }
}  // namespace

core::Buffer RankTrainer::grad(int unit, int t) {
  const DenseUnit& u = st_.units[static_cast<std::size_t>(unit)];
  const I elem = u.offset + u.tensor_offsets[static_cast<std::size_t>(t)];
  const I len = u.tensor_elems[static_cast<std::size_t>(t)];
  const double g = model_.grad_bytes_per_param();
  if (len == 0) return {};
  if (full_grads()) return st_.grads.slice(B(elem, g), B(len, g));
  if (unit == 0) return st_.emb_grad.slice(B(u.tensor_offsets[static_cast<std::size_t>(t)], g), B(len, g));
  for (const GradBucket& b : st_.buckets)
    if (b.buffer >= 0 && elem >= b.lo && elem < b.hi)
      return st_.bucket_buf[static_cast<std::size_t>(b.buffer)].slice(B(elem - b.lo, g), B(len, g));
  throw std::logic_error("no gradient bucket holds a tensor of unit " + std::to_string(unit));
}

void RankTrainer::begin_backward_grads() {
  const double g = model_.grad_bytes_per_param();
  auto zero = [&](const core::Buffer& b) {
    if (b) tensor(ops::fill(b, static_cast<I>(static_cast<double>(b.bytes) / g)), "zero gradients");
  };
  std::fill(bucket_open_.begin(), bucket_open_.end(), false);
  if (!step_grads_open_) {  // the step's first backward pass (micro-batch 0, or its last chunk with virtual stages)
    if (full_grads()) zero(st_.grads);
    zero(st_.expert_grads);
    zero(st_.replica_grads);
    step_grads_open_ = true;
  }
  if (!full_grads()) {
    // The previous micro-batch's reduction may still be reading the embedding gradient (with grad_overlap).
    rt_.stream_wait(kCompute, emb_grad_free_);
    zero(st_.emb_grad);
  }
}

void RankTrainer::open_unit_grads(int unit) {
  if (full_grads() || unit == 0) return;
  const DenseUnit& u = st_.units[static_cast<std::size_t>(unit)];
  const double g = model_.grad_bytes_per_param();
  for (std::size_t i = 0; i < st_.buckets.size(); ++i) {
    const GradBucket& b = st_.buckets[i];
    if (bucket_open_[i] || b.buffer < 0 || b.lo >= u.offset + u.elems || b.hi <= u.offset) continue;
    // The buffer's previous bucket must have been reduced before backward writes into it again.
    rt_.stream_wait(kCompute, buffer_free_[static_cast<std::size_t>(b.buffer)]);
    tensor(ops::fill(st_.bucket_buf[static_cast<std::size_t>(b.buffer)].slice(0, B(b.padded, g)), b.padded),
           "zero gradient bucket");
    bucket_open_[i] = true;
  }
}

void RankTrainer::unit_grads_done(int unit) {
  const bool last_micro = micro_ + 1 == plan_.routing.micro_batches;
  if (full_grads() && !last_micro) return;  // keep accumulating in place
  sum_replicated_grads(unit);  // tensor parallelism: before the data-parallel reduction reads them
  if (unit == 0) sum_shared_table_grads();
  for (std::size_t i = 0; i < st_.buckets.size(); ++i)
    if (st_.buckets[i].done_unit == unit) reduce_bucket(i);
}

void RankTrainer::sum_shared_table_grads() {
  // A token table split by pipeline stages: the first stage's copy has the lookup's gradient, the last stage's
  // the tied output layer's or the multi-token prediction modules' lookups'. Each adds the other's before its data-parallel reduction (Megatron sums the two copies'
  // gradients the same way), so both copies take the same update and stay equal. Both stages reach this point once
  // per step, on the last micro-batch (ZeRO-2, which would reduce every micro-batch, is refused with it).
  if (!shares_token_table(model_) || layout_.pp == 1 || (stage_ != 0 && !last_stage())) return;
  const core::Buffer g = grad(0, kTokenTable);
  rt_.stream_wait(kComm2, last_compute_);
  last_reduce_ = rt_.all_reduce(kComm2, embedding_group_, g, g.bytes, dtype_);
  if (!policy_.grad_overlap) rt_.wait(last_reduce_);
}

namespace {
/// Reduce-scatter of `src` over `group` into `dst` (one member's piece); adds into `dst` instead through `tmp`
/// when accumulating. A group of one is a copy (or an add).
core::Event reduce_scatter_into(core::Runtime& rt, const core::Group& group, const core::Buffer& src,
                                const core::Buffer& dst, const core::Buffer& tmp, bool accumulate, core::Dtype dtype,
                                double grad_bytes) {
  const core::Buffer out = accumulate ? tmp.slice(0, dst.bytes) : dst;
  core::Event e = group.size() > 1 ? rt.reduce_scatter(kComm2, group, src, out, src.bytes, dtype)
                                   : rt.copy(kComm2, out, src, dst.bytes);
  if (accumulate) {
    const auto n = static_cast<I>(static_cast<double>(dst.bytes) / grad_bytes);
    e = rt.compute(kComm2, ops::with_dtype(ops::add(dst, out, dst, n), dtype), "accumulate gradient piece");
  }
  return e;
}
}  // namespace

void RankTrainer::reduce_bucket(std::size_t i) {
  const GradBucket& b = st_.buckets[i];
  const double g = model_.grad_bytes_per_param();
  const bool last_micro = micro_ + 1 == plan_.routing.micro_batches, accumulate = micro_ > 0;
  rt_.stream_wait(kComm2, last_compute_);
  const auto source = [&] {  // ZeRO: the bucket's rotating buffer, or the embedding gradient block
    return b.buffer < 0 ? st_.emb_grad.slice(0, B(b.padded, g))
                        : st_.bucket_buf[static_cast<std::size_t>(b.buffer)].slice(0, B(b.padded, g));
  };
  switch (policy_.dense) {
    case DenseSharding::ddp:
      if (world_.size() == 1) return;
      last_reduce_ = rt_.all_reduce(kComm2, world_, st_.grads.slice(B(b.lo, g), B(b.hi - b.lo, g)), B(b.hi - b.lo, g),
                                    dtype_);
      break;
    case DenseSharding::zero2:
      last_reduce_ = reduce_scatter_into(rt_, world_, source(), st_.grads.slice(B(b.part_offset, g), B(b.piece, g)),
                                         st_.reduce_tmp, accumulate, dtype_, g);
      break;
    case DenseSharding::distributed: {
      const core::Buffer piece = st_.part_grads.slice(B(b.part_offset, g), B(b.piece, g));
      const core::Buffer bucket = st_.grads.slice(B(b.lo, g), B(b.padded, g));  // the tail reads into the slack
      last_reduce_ = world_.size() > 1 ? rt_.reduce_scatter(kComm2, world_, bucket, piece, bucket.bytes, dtype_)
                                       : rt_.copy(kComm2, piece, bucket, piece.bytes);
      break;
    }
    case DenseSharding::zero3: {
      const DenseUnit& u = st_.units[static_cast<std::size_t>(b.done_unit)];
      const I np = u.padded / node_group_.size(), wp = np / rail_group_.size();
      const core::Buffer node_piece = st_.node_grads.slice(B(u.shard_offset, g), B(np, g));
      last_reduce_ = reduce_scatter_into(rt_, node_group_, source(), node_piece, st_.reduce_tmp, accumulate, dtype_, g);
      if (last_micro && rail_group_.size() > 1)
        last_reduce_ = rt_.reduce_scatter(kComm2, rail_group_, node_piece, st_.grads.slice(B(u.part_offset, g), B(wp, g)),
                                          node_piece.bytes, dtype_);
      break;
    }
  }
  if (!full_grads())
    (b.buffer >= 0 ? buffer_free_[static_cast<std::size_t>(b.buffer)] : emb_grad_free_) = last_reduce_;
  if (!policy_.grad_overlap) rt_.wait(last_reduce_);
}

void RankTrainer::expert_grads_done(int moe_layer) {
  if (micro_ + 1 == plan_.routing.micro_batches && replicas_on() && st_.replica_grads) {
    reduce_replica_grads(moe_layer);  // the copies' gradients into their owners' first
    rt_.stream_wait(kComm2, replica_reduced_);  // the expert-data-parallel reduction sums complete gradients
    if (!policy_.grad_overlap) rt_.wait(replica_reduced_);
  }
  if (micro_ + 1 != plan_.routing.micro_batches || layout_.edp == 1 || !st_.expert_grads) return;
  const double g = model_.grad_bytes_per_param();
  const I layer = st_.expert_layer_elems;
  const I step = policy_.bucket_bytes > 0
                     ? std::max<I>(1, static_cast<I>(policy_.bucket_bytes / g))
                     : model_.expert_params_per_expert();
  rt_.stream_wait(kComm2, last_compute_);
  const I base = st_.expert_slot[static_cast<std::size_t>(moe_layer)] * layer;
  if (!st_.expert_chunks.empty()) {  // distributed optimizer: each chunk reduce-scattered into this rank's piece
    const I pieces = st_.expert_slot[static_cast<std::size_t>(moe_layer)] * st_.expert_piece_layer;
    for (const GradBucket& b : st_.expert_chunks) {
      const core::Buffer src = st_.expert_grads.slice(B(base + b.lo, g), B(b.padded, g));
      last_reduce_ = rt_.reduce_scatter(kComm2, edp_group_, src,
                                        st_.expert_part_grads.slice(B(pieces + b.part_offset, g), B(b.piece, g)),
                                        src.bytes, dtype_);
      if (!policy_.grad_overlap) rt_.wait(last_reduce_);
    }
    return;
  }
  for (I lo = 0; lo < layer; lo += step) {
    const I n = std::min(step, layer - lo);
    last_reduce_ = rt_.all_reduce(kComm2, edp_group_, st_.expert_grads.slice(B(base + lo, g), B(n, g)), B(n, g), dtype_);
    if (!policy_.grad_overlap) rt_.wait(last_reduce_);
  }
}

void RankTrainer::gather_updated_params(core::Event after) {
  rt_.stream_wait(kComm2, after);
  const double a = a_;
  if (!st_.expert_chunks.empty()) {  // the experts' updated pieces back to every replica
    const I r = edp_group_.index_of(rank_), layer = st_.expert_layer_elems;
    for (int held = 0; held < st_.held_moe_layers; ++held)
      for (const GradBucket& b : st_.expert_chunks) {
        const core::Buffer recv = st_.expert_gather_tmp.slice(0, B(b.padded, a));
        rt_.all_gather(kComm2, edp_group_, st_.expert_params.slice(B(held * layer + b.lo + r * b.piece, a), B(b.piece, a)),
                       recv, recv.bytes);
        rt_.copy(kComm2, st_.expert_params.slice(B(held * layer + b.lo, a), B(b.hi - b.lo, a)), recv,
                 B(b.hi - b.lo, a));
      }
  }
  switch (policy_.dense) {
    case DenseSharding::ddp:
      return;
    case DenseSharding::zero2:
    case DenseSharding::distributed: {
      if (world_.size() == 1) return;
      const I r = world_.index_of(rank_);
      for (const GradBucket& b : st_.buckets) {
        const core::Buffer recv = st_.gather_tmp.slice(0, B(b.padded, a));
        rt_.all_gather(kComm2, world_, st_.params.slice(B(b.lo + r * b.piece, a), B(b.piece, a)), recv, recv.bytes);
        rt_.copy(kComm2, st_.params.slice(B(b.lo, a), B(b.hi - b.lo, a)), recv, B(b.hi - b.lo, a));
      }
      return;
    }
    case DenseSharding::zero3: {
      if (rail_group_.size() == 1) return;
      const I j = rail_group_.index_of(rank_);
      for (const DenseUnit& u : st_.units) {
        const I np = u.padded / node_group_.size(), wp = np / rail_group_.size();
        const core::Buffer recv = st_.gather_tmp.slice(0, B(np, a));
        rt_.all_gather(kComm2, rail_group_, st_.params.slice(B(u.shard_offset + j * wp, a), B(wp, a)), recv,
                       recv.bytes);
        rt_.copy(kComm2, st_.params.slice(B(u.shard_offset, a), B(np, a)), recv, B(np, a));
      }
      return;
    }
  }
}

}  // namespace moesys::policies::training
