#pragma once
// Tensor parallelism with sequence parallelism (Megatron-LM's layout), as the training program runs it.
//
// A tensor-parallel group of `tp` ranks shares its data-parallel replica's micro-batches: each rank holds one
// contiguous shard of every micro-batch's tokens (sequence parallelism) and runs the norms, the residual adds, the
// MoE layer (router, dispatch, experts: each rank routes its own shard, and expert parallelism folds over all of the
// stage's ranks), the shared experts, the embedding lookup and the output layer on that shard alone. Attention and
// the dense FFN need every token of a sequence: their input is all-gathered over the group, each rank computes its
// shard of the heads (column-parallel Q/K/V, or MLA's up-projections) or of the FFN width (column-parallel W1,
// row-parallel W2) on all tokens, and the partial outputs are reduce-scattered back to the token shards. Backward
// mirrors it (the gradient is all-gathered, the input gathered again rather than kept, the input gradient
// reduce-scattered).
//
// So each rank's dense layers are those of a narrower model (rank_model: heads, key/value heads and the dense FFN
// width divided by tp) with some tensors whole on every member: norms, router, biases of row-parallel outputs,
// shared experts, MLA's down-projections and latent norms (computed on the gathered tokens), the embedding and
// output layer (not split by vocabulary, unlike Megatron: each rank holds them whole for its own shard). Their
// gradients are partial sums (over the token shard, or over the heads for the down-projections), summed over the
// group once per step before the data-parallel reduction (replicated_ranges).
#include <cstdint>
#include <utility>
#include <vector>

#include "core/model_config.hpp"

namespace moesys::policies::training {

/// The shapes one rank holds: the dense layers of a member of a tensor-parallel group of `tp`, and the routed
/// experts of a member of an expert-tensor-parallel group of `etp` (each expert's FFN width / etp; the shared experts
/// keep their width). The model itself when both are 1.
core::ModelConfig rank_model(const core::ModelConfig& m, int tp, int etp = 1);

/// One routed expert's block (W1 [h][in x f], b1, W2 [f][h], b2) as drawn for the whole model, cut to member
/// `index`'s shard of an expert-tensor-parallel group of `etp`: W1's and b1's columns [index f / etp, (index + 1) f /
/// etp) of each of the `in` column groups (SwiGLU's gate and up halves), W2's rows of the same range, b2 whole (the
/// program keeps biases as parameters but issues no bias adds, dense_layers.cpp; were b2 added, only one shard could
/// add it, since the dispatcher sums the shards' outputs).
std::vector<float> expert_shard(const core::ModelConfig& m, int etp, int index, const float* whole);

/// Unit `unit` (0: the embedding unit, l + 1: layer l) as drawn for the whole model, `values` tensor after tensor
/// (layer_dense_tensors / embedding_tensors of `m`), cut to member `index`'s shard of each tensor, in the layout of
/// rank_model(m, tp).
std::vector<float> shard_unit(const core::ModelConfig& m, int unit, int tp, int index, const std::vector<float>& values);

/// The element ranges [first, end) of unit `unit` that every member holds whole, unit-relative in a rank's layout:
/// `held` gives each tensor's elements as the rank holds it (rank_model's size, or 0 for a tensor of another pipeline
/// stage). Adjacent ranges are merged.
std::vector<std::pair<std::int64_t, std::int64_t>> replicated_ranges(const core::ModelConfig& m, int unit, int tp,
                                                                    const std::vector<std::int64_t>& held);

}  // namespace moesys::policies::training
