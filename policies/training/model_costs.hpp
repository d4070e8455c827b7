#pragma once
// The dense parameter tensors of each unit (a transformer layer, or the embedding unit), which gradient buckets and
// ZeRO-3 gathers move and the rank program addresses by index. Every layer has the same slots, empty (0 elements)
// where a part is absent (a bias of a model without biases, the dense FFN of an MoE layer), so that code addresses
// a tensor by its name below and the paper's units keep their layout.
#include <cstdint>
#include <vector>

#include "core/model_config.hpp"

namespace moesys::policies::training {

/// Tensor slots of a layer unit (indices into layer_dense_tensors).
enum LayerTensor : int {
  kQkv = 0,       // [h][q + 2 kv]: Q, K and V weights back to back ([h][q], [h][kv], [h][kv])
  kQkvBias,       // q + 2 kv
  kOut,           // [q][h]
  kOutBias,       // h
  kNorm1,         // h (gain)
  kNorm1Bias,     // h (layernorm) or empty (RMSNorm)
  kNorm2,
  kNorm2Bias,
  kFfnIn,         // dense FFN W1 [h][in x f] (SwiGLU: in = 2, gate and up), or the MoE layer's router [h][E]
  kFfnInBias,     // dense b1, or the router's selection bias (sigmoid gate)
  kFfnOut,        // dense W2 [f][h] (empty in an MoE layer)
  kFfnOutBias,
  kSharedIn,      // MoE layer: the shared experts as one FFN of width shared x f: W1 [h][in x shared x f]
  kSharedInBias,
  kSharedOut,     // [shared x f][h]
  kSharedOutBias,
  kQNorm,         // head_dim: the RMSNorm gain of every query head (QK norms), or empty
  kKNorm,
  // A multi-token prediction module's layer (ModelConfig::is_mtp_layer; empty elsewhere): the norms of the previous
  // depth's hidden state and of the next token's embedding, their projection [2h][h] (hidden rows first), and the
  // norm before the module's logits.
  kMtpHNorm,
  kMtpHNormBias,
  kMtpENorm,
  kMtpENormBias,
  kMtpProj,
  kMtpNorm,
  kMtpNormBias,
  kLayerTensors
};
/// Tensor slots of the embedding unit.
enum EmbeddingTensor : int { kTokenTable = 0, kPositions, kFinalNorm, kFinalNormBias, kOutputLayer };

/// Parameter tensors (element counts) of transformer layer `layer`, excluding routed experts.
std::vector<std::int64_t> layer_dense_tensors(const core::ModelConfig& m, int layer);
/// Token table, position table, final norm gain and bias, untied output layer.
std::vector<std::int64_t> embedding_tensors(const core::ModelConfig& m);
/// Tensors of one FFN of width f: W1 [h][in x f], b1, W2 [f][h], b2 (an expert, or the dense FFN).
std::vector<std::int64_t> ffn_tensors(const core::ModelConfig& m, std::int64_t f);
/// Tensors of one routed expert.
std::vector<std::int64_t> expert_tensors(const core::ModelConfig& m);
std::int64_t sum(const std::vector<std::int64_t>& v);

}  // namespace moesys::policies::training
