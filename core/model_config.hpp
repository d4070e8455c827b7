#pragma once
// Model description for GPT-style MoE decoders: the shape of the network, its batch, its gate and its training
// precision, parsed from JSON with strict validation, plus every size derived from them (parameter counts, FLOPs,
// bytes per parameter). Policies and runtimes read sizes from here rather than recomputing them.
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

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
  ModelLimit ffn_width{1 << 20};
  ModelLimit shared_experts{64};
};
inline constexpr ModelLimits kModelLimits{};
inline constexpr double kMaxModelParams = 1e15;

/// Attention of a decoder block: multi-head (MHA), grouped-query (GQA: kv_heads < heads share each K/V head among
/// heads / kv_heads query heads) or multi-head latent attention (MLA, DeepSeek-V2/V3: queries and keys/values
/// projected through low-rank latents, a decoupled rotary part of the key shared by all heads).
enum class AttentionKind { mha, gqa, mla };
enum class Activation { gelu, swiglu };   // FFN: GeLU (two matrices) or SwiGLU (gate and up, then down: three)
enum class NormKind { layernorm, rmsnorm };  // gain + bias, or gain only
/// Router scores: softmax over experts then top-k, or per-expert sigmoid scores whose top-k is chosen with a
/// per-expert bias that balancing adjusts instead of an auxiliary loss (DeepSeek-V3); the bias only selects.
enum class GateKind { softmax, sigmoid };
const char* to_string(AttentionKind k);
const char* to_string(Activation a);
const char* to_string(NormKind n);
const char* to_string(GateKind g);

/// MLA's projections (all widths in elements). q_lora_rank 0: queries projected directly from the hidden state.
struct MlaShape {
  int q_lora_rank = 0, kv_lora_rank = 0, qk_nope_head_dim = 0, qk_rope_head_dim = 0, v_head_dim = 0;
  bool operator==(const MlaShape&) const = default;
};

struct ModelConfig {
  std::string name;
  int layers = 0;          // decoder blocks
  int hidden = 0;          // model width h
  int heads = 0;           // attention (query) heads
  int ffn_multiplier = 4;  // dense FFN width = ffn_multiplier * hidden, unless dense_ffn_width is set
  int vocab = 0;           // token vocabulary
  int seq_len = 0;         // tokens per sequence (with learned positions, also the position table's length)
  int micro_batch = 0;     // sequences per rank per forward/backward
  int global_batch = 0;    // sequences per optimizer step, a multiple of micro_batch
  int moe_every = 1;       // after the dense first layers, an MoE FFN every k layers; 1 = every layer
  int experts = 1;         // routed experts per MoE layer
  int top_k = 2;           // routed experts per token
  double capacity_factor = 1.2;
  Dtype dtype = Dtype::fp16;        // parameter, gradient and activation type
  std::string optimizer = "adamw";  // "adamw" | "sgd"

  // ---- today's MoE architectures (defaults: the paper's GPT-MoE) ----
  AttentionKind attention = AttentionKind::mha;
  int kv_heads = 0;          // GQA key/value heads (0: = heads)
  int head_dim_elems = 0;    // width of one head (0: hidden / heads)
  MlaShape mla;              // attention == mla
  bool qk_norm = false;      // an RMSNorm over each query and key head, before the rotation (Qwen3)
  int dense_ffn_width = 0;   // dense FFN width in elements (0: ffn_multiplier * hidden)
  int expert_ffn_width = 0;  // routed and shared expert width (0: the dense FFN width)
  Activation activation = Activation::gelu;
  NormKind norm = NormKind::layernorm;
  bool biases = true;            // biases on the linear layers (attention, FFNs, router)
  bool learned_positions = true;  // a learned position table (false: rotary positions, no parameters)
  bool tied_embeddings = true;   // the output layer reuses the token table
  int first_dense_layers = 0;    // leading layers with a dense FFN (DeepSeek-V3: 3)
  int shared_experts = 0;        // experts every token passes through, beside the routed ones
  GateKind gate = GateKind::softmax;
  int expert_groups = 1;         // routing groups the experts are split into (DeepSeek-V3: 8, one per node)
  int max_groups_per_token = 0;  // groups a token's experts may come from (0: all)
  int mtp_layers = 0;            // multi-token prediction modules (DeepSeek-V3: 1), each one MoE block
  double mtp_loss_weight = 0.3;  // lambda: the MTP losses' mean is added with this weight (DeepSeek-V3: 0.3, later 0.1)
  int mtp_blocks = 0;            // the training program's view only (with_mtp_blocks); 0 in a parsed model
  bool fp8_gemm = false;      // GEMM inputs in fp8 (the other tensors keep dtype)
  bool fp8_dispatch = false;  // rows sent to the experts in fp8 (the combine returns dtype)
  /// Not part of the JSON: the shared experts' summed width where it is not shared_experts x expert width (a
  /// training rank's shapes when the routed experts are split over an expert-tensor-parallel group).
  int shared_ffn_width = 0;

  bool operator==(const ModelConfig&) const = default;

  /// The paper's family: 12 layers, hidden 4096, 64 heads, vocab 50304, seq 1024, FFN 4x, MoE in every layer,
  /// top-2 gate with capacity 1.2, fp16 + AdamW; 8 -> 13.9B, 64 -> 104.1B, 128 -> 207.2B parameters.
  static ModelConfig paper_gpt_moe(int experts);

  // ---- shape ----
  int ffn_hidden() const { return dense_ffn_width > 0 ? dense_ffn_width : ffn_multiplier * hidden; }
  int expert_hidden() const { return expert_ffn_width > 0 ? expert_ffn_width : ffn_hidden(); }
  /// The shared experts as one FFN: their summed width.
  std::int64_t shared_hidden() const {
    return shared_ffn_width > 0 ? shared_ffn_width : std::int64_t{shared_experts} * expert_hidden();
  }
  int head_dim() const { return head_dim_elems > 0 ? head_dim_elems : hidden / heads; }
  int kv_head_count() const { return kv_heads > 0 ? kv_heads : heads; }
  /// Widths of all query heads together and of all key (and value) heads together; MLA: per-head q/k width
  /// nope + rope, value width v_head_dim.
  std::int64_t q_width() const;
  std::int64_t kv_width() const;
  /// Keys as attention reads them (MLA: nope + rope per head, the width of the queries) and the attention output
  /// (heads x value width: the queries' width, or MLA's heads x v_head_dim).
  std::int64_t k_width() const { return attention == AttentionKind::mla ? q_width() : kv_width(); }
  std::int64_t ctx_width() const { return attention == AttentionKind::mla ? kv_width() : q_width(); }
  /// Per-head widths as the attention kernel sees them: queries and keys, values (MLA: nope + rope, v_head_dim).
  int attention_qk_dim() const {
    return attention == AttentionKind::mla ? mla.qk_nope_head_dim + mla.qk_rope_head_dim : head_dim();
  }
  int attention_v_dim() const { return attention == AttentionKind::mla ? mla.v_head_dim : head_dim(); }
  int attention_kv_heads() const { return attention == AttentionKind::mla ? heads : kv_head_count(); }
  /// Weight matrices of one FFN (2 for GeLU, 3 for SwiGLU) and the first GEMM's output width per FFN width unit.
  int ffn_matrices() const { return activation == Activation::swiglu ? 3 : 2; }
  int ffn_in_factor() const { return activation == Activation::swiglu ? 2 : 1; }
  bool is_moe_layer(int layer) const {
    if (is_mtp_layer(layer)) return true;
    return layer >= first_dense_layers && (layer - first_dense_layers) % moe_every == moe_every - 1;
  }
  int moe_layers() const {
    const int main = main_layers();
    return (main <= first_dense_layers ? 0 : (main - first_dense_layers) / moe_every) + mtp_blocks;
  }
  /// MoE blocks a training step runs: the MoE layers and one per multi-token prediction module.
  int moe_blocks() const { return moe_layers() + mtp_layers; }
  /// The training program's view (policies/training): the MTP modules' blocks become the last `mtp_layers` layers
  /// (mtp_blocks), so that stages, routing, experts and units treat them as layers; their extra parts (the norms,
  /// the projection of [hidden; next token's embedding], the head's norm) are tensors of those layers' units.
  ModelConfig with_mtp_blocks() const;
  int main_layers() const { return layers - mtp_blocks; }
  bool is_mtp_layer(int layer) const { return layer >= main_layers(); }
  int dense_ffn_layers() const { return layers - moe_layers(); }
  std::int64_t tokens_per_micro_batch() const { return std::int64_t{micro_batch} * seq_len; }
  std::int64_t tokens_per_global_batch() const { return std::int64_t{global_batch} * seq_len; }
  /// GShard capacity of one expert for a micro-batch of `tokens` tokens (see gshard_capacity).
  std::int64_t expert_capacity(std::int64_t tokens) const {
    return gshard_capacity(tokens, top_k, experts, capacity_factor);
  }

  // ---- parameter counts (see the convention in model_config.cpp) ----
  std::int64_t norm_params(std::int64_t width) const { return norm == NormKind::layernorm ? 2 * width : width; }
  std::int64_t attention_params_per_layer() const;  // projections (+ biases, MLA's latent norms, QK norms)
  std::int64_t layernorm_params_per_layer() const;  // the two norms of a block
  std::int64_t ffn_params(std::int64_t width) const;  // one FFN of that width, with its biases
  std::int64_t expert_params_per_expert() const { return ffn_params(expert_hidden()); }
  std::int64_t shared_expert_params_per_layer() const { return shared_experts * expert_params_per_expert(); }
  std::int64_t gate_params_per_layer() const;       // router hidden x experts (+ bias: router or selection bias)
  std::int64_t embedding_params() const;            // token table (+ learned positions)
  std::int64_t output_params() const;               // untied output layer (0 when tied)
  std::int64_t mtp_params() const;                  // multi-token prediction modules (embedding and head shared)
  std::int64_t dense_params() const;                // everything always active (no routed experts, no gates)
  std::int64_t expert_params() const;               // all routed experts of all MoE layers
  std::int64_t gate_params() const;                 // all gates
  /// The main model (what model cards call the total, DeepSeek-V3's 671B) and with the MTP modules.
  std::int64_t main_params() const { return dense_params() + expert_params() + gate_params(); }
  std::int64_t total_params() const { return main_params() + mtp_params(); }
  /// Parameters one token passes through in the main model: everything but the routed experts it is not sent to
  /// (both embedding tables counted; model cards differ on the input table, see models/README.md).
  std::int64_t active_params() const;

  // ---- forward FLOPs per token (multiply-add = 2 FLOPs; training ~ 3x forward) ----
  double attention_flops_per_token_per_layer() const;     // projections + scores + weighted sum over seq_len
  double expert_flops_per_token() const;                  // one token through one expert FFN
  double ffn_flops_per_token_per_layer(int layer) const;  // dense FFN, or gate + top_k + shared experts
  double logits_flops_per_token() const;                  // output projection to the vocabulary
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
