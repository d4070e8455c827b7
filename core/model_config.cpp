#include "core/model_config.hpp"

#include "core/json_reader.hpp"

#include <algorithm>
#include <cstdio>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <stdexcept>

#include "core/error.hpp"

namespace moesys::core {

// Parameter-count convention (the one that reproduces the paper's 13.9B / 104.1B / 207.2B to 0.1B):
//   per layer:  attention QKV (h x 3h + 3h) and output (h x h + h)        = 4h^2 + 4h
//               two layernorms (gain + bias)                              = 4h
//               FFN (dense layer, or each expert): h x f + f, f x h + h   = 2hf + f + h
//               gate of an MoE layer: h x E, no bias (GShard's wg)
//   once:       token embedding V x h, learned positions seq_len x h, final layernorm 2h;
//               the output projection is tied to the token embedding (not counted again).
// For h = 4096, f = 4h, V = 50304, 12 layers: 1.016B dense + E x 1.611B experts + 49152 E gate, i.e. 13.903B,
// 104.111B, 207.206B for E = 8, 64, 128. Why tied: an untied output layer adds 0.206B and would make the 8-expert
// model 14.1B. Biases, layernorms and gates add under 0.01B, so the paper's rounding cannot see them; they are
// counted because they are real parameters that the memory model must place.
// Today's architectures change the terms, not the convention: Q is h x heads*head_dim and K, V are
// h x kv_heads*head_dim each (GQA), MLA has its latent projections and norms (attention_params_per_layer), a SwiGLU
// FFN has three matrices (gate and up h x f each, down f x h), RMSNorm has a gain only, `biases: false` drops the
// linear biases, rotary positions have no table, an untied output layer adds V x h, shared experts are FFNs of
// the expert width in every MoE layer, and the sigmoid gate adds its selection bias (E per layer). The zoo's
// published totals are matched within 1% (tests/core/test_model_zoo.cpp).

ModelConfig ModelConfig::paper_gpt_moe(int experts) {
  ModelConfig m;
  m.name = "gpt-moe-" + std::to_string(experts) + "e";
  m.layers = 12;
  m.hidden = 4096;
  m.heads = 64;
  m.ffn_multiplier = 4;
  m.vocab = 50304;
  m.seq_len = 1024;
  // The paper notes give no batch sizes; these are placeholders that experiment files override: one micro-batch
  // of 8 sequences per GPU, with one expert per GPU as in the paper's 8..128-GPU scaling.
  m.micro_batch = 8;
  m.global_batch = 8 * experts;
  m.moe_every = 1;
  m.experts = experts;
  m.top_k = 2;
  m.capacity_factor = 1.2;
  m.dtype = Dtype::fp16;
  m.optimizer = "adamw";
  return m;
}

std::int64_t gshard_capacity(std::int64_t tokens, int top_k, int experts, double capacity_factor) {
  double exact = capacity_factor * static_cast<double>(tokens) * top_k / experts;
  // The small slack keeps exact products (1.25 * 256 = 320) from rounding up through floating-point noise.
  return static_cast<std::int64_t>(std::ceil(exact - 1e-9 * std::max(1.0, exact)));
}

const char* to_string(AttentionKind k) {
  switch (k) {
    case AttentionKind::mha: return "mha";
    case AttentionKind::gqa: return "gqa";
    case AttentionKind::mla: return "mla";
  }
  return "?";
}
const char* to_string(Activation a) { return a == Activation::gelu ? "gelu" : "swiglu"; }
const char* to_string(NormKind n) { return n == NormKind::layernorm ? "layernorm" : "rmsnorm"; }
const char* to_string(GateKind g) { return g == GateKind::softmax ? "softmax" : "sigmoid"; }

std::int64_t ModelConfig::q_width() const {
  if (attention == AttentionKind::mla) return std::int64_t{heads} * (mla.qk_nope_head_dim + mla.qk_rope_head_dim);
  return std::int64_t{heads} * head_dim();
}
std::int64_t ModelConfig::kv_width() const {
  if (attention == AttentionKind::mla) return std::int64_t{heads} * mla.v_head_dim;
  return std::int64_t{kv_head_count()} * head_dim();
}

std::int64_t ModelConfig::attention_params_per_layer() const {
  const std::int64_t h = hidden;
  if (attention == AttentionKind::mla) {
    // Queries: h -> q_lora (norm) -> heads x (nope + rope), or h -> heads x (nope + rope) directly. Keys and values:
    // h -> kv_lora + rope (the shared rotary key), norm over the latent, kv_lora -> heads x (nope + v). Output:
    // heads x v -> h. No biases (DeepSeek-V2/V3).
    const std::int64_t H = heads, ql = mla.q_lora_rank, kvl = mla.kv_lora_rank, rope = mla.qk_rope_head_dim;
    const std::int64_t q = ql > 0 ? h * ql + ql + ql * q_width() : h * q_width();
    const std::int64_t kv = h * (kvl + rope) + kvl + kvl * H * (mla.qk_nope_head_dim + mla.v_head_dim);
    return q + kv + kv_width() * h;
  }
  const std::int64_t q = q_width(), kv = kv_width();
  std::int64_t p = h * q + 2 * h * kv + q * h;
  if (biases) p += q + 2 * kv + h;
  if (qk_norm) p += 2 * std::int64_t{head_dim()};  // RMSNorm gains of the query and key heads
  return p;
}
std::int64_t ModelConfig::layernorm_params_per_layer() const {
  return 2 * norm_params(hidden);
}
std::int64_t ModelConfig::ffn_params(std::int64_t f) const {
  const std::int64_t h = hidden, in = ffn_in_factor() * f;
  return h * in + f * h + (biases ? in + h : 0);
}
std::int64_t ModelConfig::gate_params_per_layer() const {
  // GShard's router has no bias; the sigmoid gate's selection bias is one value per expert.
  return std::int64_t{hidden} * experts + (gate == GateKind::sigmoid ? experts : 0);
}
std::int64_t ModelConfig::embedding_params() const {
  return (std::int64_t{vocab} + (learned_positions ? seq_len : 0)) * hidden;
}
std::int64_t ModelConfig::output_params() const {
  return tied_embeddings ? 0 : std::int64_t{vocab} * hidden;
}
std::int64_t ModelConfig::mtp_params() const {
  // One module: norms of the previous depth's hidden state and of the next token's embedding, their projection
  // [2h][h], one MoE block and its output norm; the embedding and the output layer are the main model's.
  const std::int64_t h = hidden;
  const std::int64_t block = attention_params_per_layer() + layernorm_params_per_layer() +
                             experts * expert_params_per_expert() + shared_expert_params_per_layer() +
                             gate_params_per_layer();
  // The program's view counts the blocks as layers (main_params) and the rest here, so the total stays the same.
  return mtp_layers * (3 * norm_params(h) + 2 * h * h + block) + mtp_blocks * (3 * norm_params(h) + 2 * h * h);
}

ModelConfig ModelConfig::with_mtp_blocks() const {
  ModelConfig m = *this;
  m.layers += mtp_layers;
  m.mtp_blocks += mtp_layers;
  m.mtp_layers = 0;
  return m;
}
std::int64_t ModelConfig::dense_params() const {
  std::int64_t per_layer = attention_params_per_layer() + layernorm_params_per_layer();
  std::int64_t final_norm = norm_params(hidden);
  return layers * per_layer + dense_ffn_layers() * ffn_params(ffn_hidden()) +
         moe_layers() * shared_expert_params_per_layer() + embedding_params() + output_params() + final_norm;
}
std::int64_t ModelConfig::expert_params() const {
  return std::int64_t{moe_layers()} * experts * expert_params_per_expert();
}
std::int64_t ModelConfig::gate_params() const {
  return std::int64_t{moe_layers()} * gate_params_per_layer();
}
std::int64_t ModelConfig::active_params() const {
  return dense_params() + gate_params() + std::int64_t{moe_layers()} * top_k * expert_params_per_expert();
}

double ModelConfig::attention_flops_per_token_per_layer() const {
  const double s = seq_len;
  // Projections: 2 FLOPs per weight (biases and norms are not GEMM work). Scores QK^T and the weighted sum of V
  // over seq_len keys, 2 FLOPs per multiply-add, with no causal discount, as in Megatron's accounting (kernels
  // compute the full score matrix). MHA with heads x head_dim = h: 8h^2 + 4sh.
  double weights = static_cast<double>(attention_params_per_layer());
  if (attention == AttentionKind::mla) {
    weights -= static_cast<double>(mla.q_lora_rank + mla.kv_lora_rank);  // the latent norms
  } else {
    if (biases) weights -= static_cast<double>(q_width() + 2 * kv_width() + hidden);
    if (qk_norm) weights -= 2.0 * head_dim();
  }
  return 2.0 * weights + 2.0 * s * static_cast<double>(q_width()) + 2.0 * s * static_cast<double>(kv_width());
}
double ModelConfig::expert_flops_per_token() const {
  return 2.0 * ffn_matrices() * hidden * static_cast<double>(expert_hidden());
}
double ModelConfig::ffn_flops_per_token_per_layer(int layer) const {
  if (!is_moe_layer(layer)) return 2.0 * ffn_matrices() * hidden * static_cast<double>(ffn_hidden());
  return 2.0 * hidden * experts + (top_k + shared_experts) * expert_flops_per_token();
}
double ModelConfig::logits_flops_per_token() const {
  return 2.0 * hidden * static_cast<double>(vocab);
}
double ModelConfig::forward_flops_per_token() const {
  if (mtp_layers > 0) return with_mtp_blocks().forward_flops_per_token();
  double total = logits_flops_per_token();
  for (int l = 0; l < layers; ++l) total += attention_flops_per_token_per_layer() + ffn_flops_per_token_per_layer(l);
  // A multi-token prediction module adds its projection of [hidden; embedding] and its own logits to its block.
  return total + mtp_blocks * (4.0 * hidden * hidden + logits_flops_per_token());
}

int ModelConfig::optimizer_bytes_per_param() const {
  // Mixed precision keeps an fp32 master copy whenever parameters are stored narrower than fp32.
  int master = dtype_bytes(dtype) < 4 ? 4 : 0;
  // AdamW: fp32 first and second moments. SGD: plain (no momentum), nothing beyond the master copy.
  int moments = optimizer == "adamw" ? 8 : 0;
  return master + moments;
}

using nlohmann::json;

namespace {

void parse_attention(JsonObjectReader& parent, const json& j, ModelConfig& m) {
  JsonObjectReader r(j, parent.file(), parent.path("attention"));
  const std::string kind = r.choice("kind", {"mha", "gqa", "mla"});
  auto head = [&r](const char* key, std::optional<int> fallback = {}) {
    return static_cast<int>(r.integer(key, 1, kModelLimits.hidden.max, fallback));
  };
  if (kind == "mla") {
    m.attention = AttentionKind::mla;
    m.mla.q_lora_rank = static_cast<int>(r.integer("q_lora_rank", 0, kModelLimits.hidden.max, 0));
    m.mla.kv_lora_rank = head("kv_lora_rank");
    m.mla.qk_nope_head_dim = head("qk_nope_head_dim");
    m.mla.qk_rope_head_dim = head("qk_rope_head_dim");
    m.mla.v_head_dim = head("v_head_dim");
  } else {
    m.attention = kind == "gqa" ? AttentionKind::gqa : AttentionKind::mha;
    if (m.attention == AttentionKind::gqa) m.kv_heads = static_cast<int>(r.integer("kv_heads", 1, kModelLimits.heads.max));
    m.head_dim_elems = r.find("head_dim", false) ? head("head_dim") : 0;
    m.qk_norm = r.boolean("qk_norm", false);
  }
  r.reject_unknown();
  if (m.attention == AttentionKind::gqa && m.heads % m.kv_heads != 0)
    r.fail("kv_heads", "expected a divisor of heads (" + std::to_string(m.heads) + "), got " +
                           std::to_string(m.kv_heads));
  if (m.attention != AttentionKind::mla && m.head_dim_elems == 0 && m.hidden % m.heads != 0)
    r.fail("head_dim", "missing: heads (" + std::to_string(m.heads) + ") do not divide hidden (" +
                           std::to_string(m.hidden) + "), so the head width must be given");
}

/// The parameter count in floating point, before any int64 product is formed.
double estimated_params(const ModelConfig& m) {
  const double h = m.hidden, H = m.heads;
  const double hd = m.head_dim_elems > 0 ? m.head_dim_elems : h / H;
  const double kvh = m.kv_heads > 0 ? m.kv_heads : H;
  const double attention = m.attention == AttentionKind::mla
                               ? h * (m.mla.q_lora_rank + m.mla.kv_lora_rank + m.mla.qk_rope_head_dim) +
                                     H * (m.mla.qk_nope_head_dim + m.mla.qk_rope_head_dim) * (h + m.mla.q_lora_rank) +
                                     H * (m.mla.qk_nope_head_dim + 2.0 * m.mla.v_head_dim) * (m.mla.kv_lora_rank + h)
                               : 2 * h * H * hd + 2 * h * kvh * hd;
  const double dense_f = m.dense_ffn_width > 0 ? m.dense_ffn_width : 1.0 * m.ffn_multiplier * h;
  const double expert_f = m.expert_ffn_width > 0 ? m.expert_ffn_width : dense_f;
  const double ffn = 3.0 * h;  // per unit of width, SwiGLU's three matrices (an upper bound)
  const double moe_layers = std::max(0, m.layers - m.first_dense_layers) / m.moe_every;
  return m.layers * (attention + 4 * h) + moe_layers * (m.experts + m.shared_experts) * ffn * expert_f +
         m.layers * ffn * dense_f + (2.0 * m.vocab + m.seq_len) * h + m.mtp_layers * (attention + 2 * h * h) +
         (m.mtp_layers + moe_layers) * (m.experts + m.shared_experts) * ffn * expert_f;
}

}  // namespace

ModelConfig parse_model_config(const json& j, const std::string& file, const std::string& base_path) {
  JsonObjectReader r(j, file, base_path);
  ModelConfig m;
  // Each field has a ceiling far above any published model, so that every derived size (FFN width, parameter and
  // token counts) stays exact in 64-bit integers and no run is asked to simulate billions of anything.
  auto bounded = [&r](const char* key, const ModelLimit& limit, std::optional<int> fallback = {}) {
    return static_cast<int>(r.integer(key, 1, limit.max, fallback));
  };
  auto count = [&r](const char* key, std::int64_t max) { return static_cast<int>(r.integer(key, 0, max, 0)); };
  m.name = r.string("name");
  m.layers = bounded("layers", kModelLimits.layers);
  m.hidden = bounded("hidden", kModelLimits.hidden);
  m.heads = bounded("heads", kModelLimits.heads);
  const bool width_given = r.find("ffn_hidden", false) != nullptr;
  if (width_given && r.find("ffn_multiplier", false))
    r.fail("ffn_hidden", "give the dense FFN width either as ffn_hidden (elements) or as ffn_multiplier, not both");
  m.ffn_multiplier = bounded("ffn_multiplier", kModelLimits.ffn_multiplier, 4);
  m.dense_ffn_width = width_given ? bounded("ffn_hidden", kModelLimits.ffn_width) : 0;
  m.expert_ffn_width = r.find("expert_hidden", false) ? bounded("expert_hidden", kModelLimits.ffn_width) : 0;
  m.vocab = bounded("vocab", kModelLimits.vocab);
  m.seq_len = bounded("seq_len", kModelLimits.seq_len);
  m.micro_batch = bounded("micro_batch", kModelLimits.micro_batch);
  m.global_batch = bounded("global_batch", kModelLimits.global_batch);
  m.first_dense_layers = count("first_dense_layers", kModelLimits.layers.max);
  m.moe_every = bounded("moe_every", kModelLimits.layers, 1);
  m.experts = bounded("experts", kModelLimits.experts);
  m.top_k = bounded("top_k", kModelLimits.experts);
  m.shared_experts = count("shared_experts", kModelLimits.shared_experts.max);
  m.expert_groups = bounded("expert_groups", kModelLimits.experts, 1);
  m.max_groups_per_token = count("max_groups_per_token", kModelLimits.experts.max);
  m.gate = r.choice("gate", {"softmax", "sigmoid"}, "softmax") == "softmax" ? GateKind::softmax : GateKind::sigmoid;
  m.capacity_factor = r.number("capacity_factor", 1e-3, 1e3, 1.2);
  m.activation = r.choice("activation", {"gelu", "swiglu"}, "gelu") == "gelu" ? Activation::gelu : Activation::swiglu;
  m.norm = r.choice("norm", {"layernorm", "rmsnorm"}, "layernorm") == "layernorm" ? NormKind::layernorm
                                                                                   : NormKind::rmsnorm;
  m.biases = r.boolean("biases", true);
  m.learned_positions = r.choice("positions", {"learned", "rope"}, "learned") == "learned";
  m.tied_embeddings = r.boolean("tied_embeddings", true);
  m.mtp_layers = count("mtp_layers", kModelLimits.layers.max);
  m.mtp_loss_weight = r.number("mtp_loss_weight", 0.0, 1e3, 0.3);
  m.fp8_gemm = r.boolean("fp8_gemm", false);
  m.fp8_dispatch = r.boolean("fp8_dispatch", false);
  std::string dtype = r.string("dtype", "fp16");
  m.optimizer = r.string("optimizer", "adamw");
  if (const json* att = r.find("attention", false)) parse_attention(r, *att, m);
  r.reject_unknown();

  try {
    m.dtype = parse_dtype(dtype);
  } catch (const std::exception&) {
    r.fail("dtype", "expected one of fp32, tf32, fp16, bf16, fp8, got \"" + dtype + "\"");
  }
  if (m.optimizer != "adamw" && m.optimizer != "sgd")
    r.fail("optimizer", "expected one of adamw, sgd, got \"" + m.optimizer + "\"");
  if (m.attention == AttentionKind::mha && m.head_dim_elems == 0 && m.hidden % m.heads != 0)
    r.fail("heads", "expected a divisor of hidden (" + std::to_string(m.hidden) + "), got " + std::to_string(m.heads));
  if (m.top_k > m.experts)
    r.fail("top_k", "expected at most experts (" + std::to_string(m.experts) + "), got " + std::to_string(m.top_k));
  if (m.first_dense_layers >= m.layers)
    r.fail("first_dense_layers", "expected fewer than layers (" + std::to_string(m.layers) + "), got " +
                                     std::to_string(m.first_dense_layers));
  if (m.moe_every > m.layers - m.first_dense_layers)
    r.fail("moe_every", "expected at most layers - first_dense_layers (" +
                            std::to_string(m.layers - m.first_dense_layers) + "), got " + std::to_string(m.moe_every));
  if (m.experts % m.expert_groups != 0)
    r.fail("expert_groups", "expected a divisor of experts (" + std::to_string(m.experts) + "), got " +
                                std::to_string(m.expert_groups));
  if (m.max_groups_per_token > m.expert_groups)
    r.fail("max_groups_per_token", "expected at most expert_groups (" + std::to_string(m.expert_groups) + "), got " +
                                       std::to_string(m.max_groups_per_token));
  if (m.max_groups_per_token > 0 && m.top_k > m.max_groups_per_token * (m.experts / m.expert_groups))
    r.fail("top_k", "expected at most the experts of max_groups_per_token groups (" +
                        std::to_string(m.max_groups_per_token * (m.experts / m.expert_groups)) + "), got " +
                        std::to_string(m.top_k));
  if (m.global_batch % m.micro_batch != 0)
    r.fail("global_batch", "expected a multiple of micro_batch (" + std::to_string(m.micro_batch) + "), got " +
                               std::to_string(m.global_batch));
  // Parameter counts are int64: the field ceilings keep each factor small, this keeps the total representable.
  const double params = estimated_params(m);
  if (params > kMaxModelParams) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3g", params);
    r.fail("", std::string("the model has ") + buf + " parameters; at most 1e15 are supported");
  }
  return m;
}

json to_json(const ModelConfig& m) {
  json j{{"name", m.name},
         {"layers", m.layers},
         {"hidden", m.hidden},
         {"heads", m.heads},
         {"vocab", m.vocab},
         {"seq_len", m.seq_len},
         {"micro_batch", m.micro_batch},
         {"global_batch", m.global_batch},
         {"moe_every", m.moe_every},
         {"experts", m.experts},
         {"top_k", m.top_k},
         {"capacity_factor", m.capacity_factor},
         {"dtype", to_string(m.dtype)},
         {"optimizer", m.optimizer}};
  // Fields of today's architectures are written only when they differ from the paper's GPT-MoE, so that the
  // paper's configs and reports read as before.
  if (m.dense_ffn_width > 0) j["ffn_hidden"] = m.dense_ffn_width;
  else j["ffn_multiplier"] = m.ffn_multiplier;
  if (m.expert_ffn_width > 0) j["expert_hidden"] = m.expert_ffn_width;
  if (m.attention != AttentionKind::mha || m.head_dim_elems > 0 || m.qk_norm) {
    json a{{"kind", to_string(m.attention)}};
    if (m.attention == AttentionKind::mla) {
      a["q_lora_rank"] = m.mla.q_lora_rank;
      a["kv_lora_rank"] = m.mla.kv_lora_rank;
      a["qk_nope_head_dim"] = m.mla.qk_nope_head_dim;
      a["qk_rope_head_dim"] = m.mla.qk_rope_head_dim;
      a["v_head_dim"] = m.mla.v_head_dim;
    } else {
      if (m.attention == AttentionKind::gqa) a["kv_heads"] = m.kv_heads;
      if (m.head_dim_elems > 0) a["head_dim"] = m.head_dim_elems;
      if (m.qk_norm) a["qk_norm"] = true;
    }
    j["attention"] = a;
  }
  if (m.activation != Activation::gelu) j["activation"] = to_string(m.activation);
  if (m.norm != NormKind::layernorm) j["norm"] = to_string(m.norm);
  if (!m.biases) j["biases"] = false;
  if (!m.learned_positions) j["positions"] = "rope";
  if (!m.tied_embeddings) j["tied_embeddings"] = false;
  if (m.first_dense_layers > 0) j["first_dense_layers"] = m.first_dense_layers;
  if (m.shared_experts > 0) j["shared_experts"] = m.shared_experts;
  if (m.gate != GateKind::softmax) j["gate"] = to_string(m.gate);
  if (m.expert_groups > 1) j["expert_groups"] = m.expert_groups;
  if (m.max_groups_per_token > 0) j["max_groups_per_token"] = m.max_groups_per_token;
  if (m.mtp_layers > 0) j["mtp_layers"] = m.mtp_layers;
  if (m.mtp_layers > 0) j["mtp_loss_weight"] = m.mtp_loss_weight;
  if (m.fp8_gemm) j["fp8_gemm"] = true;
  if (m.fp8_dispatch) j["fp8_dispatch"] = true;
  return j;
}

}  // namespace moesys::core
