// Tensor parallelism's communication (tensor_parallel.hpp): the all-gather of a token shard before attention or the
// dense FFN, the reduce-scatter of their partial outputs back to the shards, and once per step the sum over the group
// of the gradients of the tensors every member holds whole. All run on the communication stream between two kernels
// of the compute stream, which waits for them: they lie on the critical path, as Megatron's do without overlap.
#include "policies/training/rank_trainer.hpp"

namespace moesys::policies::training {

using core::streams::kComm;
using core::streams::kComm2;
using core::streams::kCompute;

// Sizes come from the token count, not from the views: a carved view may be padded past its rows.
core::Buffer RankTrainer::gather_tokens(const core::Buffer& local, const core::Buffer& group) {
  const std::uint64_t shard = rows_bytes(tokens_, model_.hidden, a_);
  const core::Buffer out = group.slice(0, shard * static_cast<std::uint64_t>(layout_.tp));
  rt_.stream_wait(kComm, last_compute_);
  rt_.stream_wait(kCompute, rt_.all_gather(kComm, tp_group_, local.slice(0, shard), out, out.bytes));
  return out;
}

void RankTrainer::scatter_tokens(const core::Buffer& partial, const core::Buffer& local) {
  const std::uint64_t shard = rows_bytes(tokens_, model_.hidden, a_);
  const core::Buffer in = partial.slice(0, shard * static_cast<std::uint64_t>(layout_.tp));
  rt_.stream_wait(kComm, last_compute_);
  rt_.stream_wait(kCompute, rt_.reduce_scatter(kComm, tp_group_, in, local.slice(0, shard), in.bytes, dtype_));
}

void RankTrainer::sum_replicated_grads(int unit) {
  const DenseUnit& u = st_.units[static_cast<std::size_t>(unit)];
  if (!tensor_parallel() || u.tp_replicated.empty()) return;
  const double g = model_.grad_bytes_per_param();
  auto bytes = [g](std::int64_t elems) { return static_cast<std::uint64_t>(static_cast<double>(elems) * g); };
  rt_.stream_wait(kComm2, last_compute_);
  for (const auto& [first, end] : u.tp_replicated)
    last_reduce_ = rt_.all_reduce(kComm2, tp_group_, st_.grads.slice(bytes(u.offset + first), bytes(end - first)),
                                  bytes(end - first), dtype_);
  if (!policy_.grad_overlap) rt_.wait(last_reduce_);
}

}  // namespace moesys::policies::training
