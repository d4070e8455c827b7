#pragma once
// Sizes that both the memory planner and the rank program use, so that the feasibility check and the simulated
// allocations agree byte for byte: activations kept from forward to backward, and the dense parameter tensors
// of each unit (a transformer layer, or the embedding unit) that gradient buckets and ZeRO-3 gathers move.
//
// Activations (no recomputation, flash attention: no score matrix is stored), `a` = bytes of the model dtype:
//   attention block, per token: LN1 input, LN1 output, Q, K, V, context            6h*a  + softmax stats 4*heads
//   MoE FFN, per token: LN2 input, gate input 2h*a, gate probabilities 4E, combine weights 4k;
//            per computed row: expert input h*a, pre- and post-activation 2f*a; per returned row: h*a
//   dense FFN, per token: LN2 input, FFN input 2h*a, pre- and post-activation 2f*a
//   embedding output h*a per token; logits V*a plus fp32 softmax 4V per token.
#include <cstdint>
#include <vector>

#include "core/model_config.hpp"

namespace moesys::policies::training {

std::uint64_t attention_activation_bytes(const core::ModelConfig& m, std::int64_t tokens);
std::uint64_t moe_activation_bytes(const core::ModelConfig& m, std::int64_t tokens, std::int64_t rows_computed,
                                   std::int64_t rows_returned);
std::uint64_t dense_ffn_activation_bytes(const core::ModelConfig& m, std::int64_t tokens);
std::uint64_t embedding_activation_bytes(const core::ModelConfig& m, std::int64_t tokens);
std::uint64_t logits_activation_bytes(const core::ModelConfig& m, std::int64_t tokens);

/// Parameter tensors (element counts) of transformer layer `layer`, excluding experts: QKV weight and bias,
/// output projection weight and bias, two layernorm gains and biases, and the gate (MoE layer) or the dense FFN.
std::vector<std::int64_t> layer_dense_tensors(const core::ModelConfig& m, int layer);
/// Token table, position table, final layernorm gain and bias.
std::vector<std::int64_t> embedding_tensors(const core::ModelConfig& m);
/// Tensors of one expert: two weight matrices and their biases.
std::vector<std::int64_t> expert_tensors(const core::ModelConfig& m);
std::int64_t sum(const std::vector<std::int64_t>& v);

}  // namespace moesys::policies::training
