#pragma once
// Model description for GPT-style MoE decoders: the shape of the network, its batch, its gate and its training
// precision, parsed from JSON with strict validation, plus every size derived from them (parameter counts, FLOPs,
// bytes per parameter). Policies and runtimes read sizes from here rather than recomputing them.
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>

#include "core/cluster.hpp"

namespace moesys::core {

/// GShard expert capacity: the most tokens one expert accepts from a micro-batch of `tokens` tokens,
/// ceil(capacity_factor * tokens * top_k / experts).
std::int64_t gshard_capacity(std::int64_t tokens, int top_k, int experts, double capacity_factor);

/// Ceilings of the model fields, far above any published model, so that derived sizes stay exact in 64 bits and a
/// typo (ffn_multiplier 2147483647, global_batch 128000000) is refused instead of simulated.
struct ModelLimit {
  std::int64_t max;
};
struct ModelLimits {
  ModelLimit layers{4096};
  ModelLimit hidden{1 << 17};
  ModelLimit heads{1 << 17};
  ModelLimit ffn_multiplier{64};
  ModelLimit vocab{1 << 24};
  ModelLimit seq_len{1 << 20};
  ModelLimit micro_batch{1 << 16};
  ModelLimit global_batch{1 << 20};
  ModelLimit experts{16384};
};
inline constexpr ModelLimits kModelLimits{};
inline constexpr double kMaxModelParams = 1e15;

struct ModelConfig {
  std::string name;
  int layers = 0;          // decoder blocks
  int hidden = 0;          // model width h
  int heads = 0;           // attention heads (divides hidden)
  int ffn_multiplier = 4;  // FFN inner width = ffn_multiplier * hidden
  int vocab = 0;           // token vocabulary
  int seq_len = 0;         // tokens per sequence, also the number of learned positions
  int micro_batch = 0;     // sequences per rank per forward/backward
  int global_batch = 0;    // sequences per optimizer step, a multiple of micro_batch
  int moe_every = 1;       // an MoE FFN every k layers (layers k-1, 2k-1, ...); 1 = every layer
  int experts = 1;         // experts per MoE layer
  int top_k = 2;           // experts per token
  double capacity_factor = 1.2;
  Dtype dtype = Dtype::fp16;        // parameter, gradient and activation type
  std::string optimizer = "adamw";  // "adamw" | "sgd"

  bool operator==(const ModelConfig&) const = default;

  /// The paper's family: 12 layers, hidden 4096, 64 heads, vocab 50304, seq 1024, FFN 4x, MoE in every layer,
  /// top-2 gate with capacity 1.2, fp16 + AdamW; 8 -> 13.9B, 64 -> 104.1B, 128 -> 207.2B parameters.
  static ModelConfig paper_gpt_moe(int experts);

  // ---- shape ----
  int ffn_hidden() const { return ffn_multiplier * hidden; }
  int head_dim() const { return hidden / heads; }
  bool is_moe_layer(int layer) const { return layer % moe_every == moe_every - 1; }
  int moe_layers() const { return layers / moe_every; }
  int dense_ffn_layers() const { return layers - moe_layers(); }
  std::int64_t tokens_per_micro_batch() const { return std::int64_t{micro_batch} * seq_len; }
  std::int64_t tokens_per_global_batch() const { return std::int64_t{global_batch} * seq_len; }
  /// GShard capacity of one expert for a micro-batch of `tokens` tokens (see gshard_capacity).
  std::int64_t expert_capacity(std::int64_t tokens) const {
    return gshard_capacity(tokens, top_k, experts, capacity_factor);
  }

  // ---- parameter counts (see the convention in model_config.cpp) ----
  std::int64_t attention_params_per_layer() const;  // QKV + output projections with biases
  std::int64_t layernorm_params_per_layer() const;  // two layernorms (gain + bias)
  std::int64_t expert_params_per_expert() const;    // one FFN: two matrices with biases
  std::int64_t gate_params_per_layer() const;       // gate matrix hidden x experts, no bias
  std::int64_t embedding_params() const;            // token + position tables (output layer tied)
  std::int64_t dense_params() const;                // everything always active (no experts, no gates)
  std::int64_t expert_params() const;               // all experts of all MoE layers
  std::int64_t gate_params() const;                 // all gates
  std::int64_t total_params() const { return dense_params() + expert_params() + gate_params(); }

  // ---- forward FLOPs per token (multiply-add = 2 FLOPs; training ~ 3x forward) ----
  double attention_flops_per_token_per_layer() const;     // projections + scores + weighted sum over seq_len
  double expert_flops_per_token() const;                  // one token through one expert FFN
  double ffn_flops_per_token_per_layer(int layer) const;  // dense FFN, or gate + top_k experts
  double logits_flops_per_token() const;                  // tied output projection to the vocabulary
  double forward_flops_per_token() const;
  double training_flops_per_token() const { return 3.0 * forward_flops_per_token(); }

  // ---- bytes per parameter in training ----
  int param_bytes_per_param() const { return dtype_bytes(dtype); }
  int grad_bytes_per_param() const { return dtype_bytes(dtype); }
  /// fp32 master copy (when params are narrower than fp32) + optimizer moments: 12 for fp16 AdamW.
  int optimizer_bytes_per_param() const;
  /// param + grad + optimizer state: the paper's 16 bytes per dense parameter for fp16 AdamW.
  int training_bytes_per_param() const {
    return param_bytes_per_param() + grad_bytes_per_param() + optimizer_bytes_per_param();
  }
};

/// Parses and validates a model object. `file` and `base_path` (e.g. "model") only shape error messages:
/// ConfigError("<file>: <base_path>.<key>: <what was expected>") on unknown, missing, mistyped or impossible fields.
/// Optional keys and their defaults: ffn_multiplier 4, moe_every 1, capacity_factor 1.2, dtype "fp16",
/// optimizer "adamw"; all others are required.
ModelConfig parse_model_config(const nlohmann::json& j, const std::string& file, const std::string& base_path);
nlohmann::json to_json(const ModelConfig& m);

}  // namespace moesys::core
