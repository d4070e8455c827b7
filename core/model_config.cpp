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

std::int64_t ModelConfig::attention_params_per_layer() const {
  std::int64_t h = hidden;
  return 4 * h * h + 4 * h;
}
std::int64_t ModelConfig::layernorm_params_per_layer() const {
  return 4 * std::int64_t{hidden};
}
std::int64_t ModelConfig::expert_params_per_expert() const {
  std::int64_t h = hidden, f = ffn_hidden();
  return 2 * h * f + f + h;
}
std::int64_t ModelConfig::gate_params_per_layer() const {
  return std::int64_t{hidden} * experts;
}
std::int64_t ModelConfig::embedding_params() const {
  return (std::int64_t{vocab} + seq_len) * hidden;
}
std::int64_t ModelConfig::dense_params() const {
  std::int64_t per_layer = attention_params_per_layer() + layernorm_params_per_layer();
  std::int64_t final_layernorm = 2 * std::int64_t{hidden};
  return layers * per_layer + dense_ffn_layers() * expert_params_per_expert() + embedding_params() + final_layernorm;
}
std::int64_t ModelConfig::expert_params() const {
  return std::int64_t{moe_layers()} * experts * expert_params_per_expert();
}
std::int64_t ModelConfig::gate_params() const {
  return std::int64_t{moe_layers()} * gate_params_per_layer();
}

double ModelConfig::attention_flops_per_token_per_layer() const {
  double h = hidden, s = seq_len;
  // 2 x (4h^2 projection weights) + QK^T and attention-weighted V, each 2*s*h per token (no causal discount,
  // as in Megatron's accounting: kernels compute the full score matrix).
  return 8.0 * h * h + 4.0 * s * h;
}
double ModelConfig::expert_flops_per_token() const {
  return 4.0 * hidden * static_cast<double>(ffn_hidden());
}
double ModelConfig::ffn_flops_per_token_per_layer(int layer) const {
  if (!is_moe_layer(layer)) return expert_flops_per_token();
  return 2.0 * hidden * experts + top_k * expert_flops_per_token();
}
double ModelConfig::logits_flops_per_token() const {
  return 2.0 * hidden * static_cast<double>(vocab);
}
double ModelConfig::forward_flops_per_token() const {
  double total = logits_flops_per_token();
  for (int l = 0; l < layers; ++l) total += attention_flops_per_token_per_layer() + ffn_flops_per_token_per_layer(l);
  return total;
}

int ModelConfig::optimizer_bytes_per_param() const {
  // Mixed precision keeps an fp32 master copy whenever parameters are stored narrower than fp32.
  int master = dtype_bytes(dtype) < 4 ? 4 : 0;
  // AdamW: fp32 first and second moments. SGD: plain (no momentum), nothing beyond the master copy.
  int moments = optimizer == "adamw" ? 8 : 0;
  return master + moments;
}

using nlohmann::json;

ModelConfig parse_model_config(const json& j, const std::string& file, const std::string& base_path) {
  JsonObjectReader r(j, file, base_path);
  ModelConfig m;
  // Each field has a ceiling far above any published model, so that every derived size (FFN width, parameter and
  // token counts) stays exact in 64-bit integers and no run is asked to simulate billions of anything.
  auto bounded = [&r](const char* key, const ModelLimit& limit, std::optional<int> fallback = {}) {
    return static_cast<int>(r.integer(key, 1, limit.max, fallback));
  };
  m.name = r.string("name");
  m.layers = bounded("layers", kModelLimits.layers);
  m.hidden = bounded("hidden", kModelLimits.hidden);
  m.heads = bounded("heads", kModelLimits.heads);
  m.ffn_multiplier = bounded("ffn_multiplier", kModelLimits.ffn_multiplier, 4);
  m.vocab = bounded("vocab", kModelLimits.vocab);
  m.seq_len = bounded("seq_len", kModelLimits.seq_len);
  m.micro_batch = bounded("micro_batch", kModelLimits.micro_batch);
  m.global_batch = bounded("global_batch", kModelLimits.global_batch);
  m.moe_every = bounded("moe_every", kModelLimits.layers, 1);
  m.experts = bounded("experts", kModelLimits.experts);
  m.top_k = bounded("top_k", kModelLimits.experts);
  m.capacity_factor = r.number("capacity_factor", 1e-3, 1e3, 1.2);
  std::string dtype = r.string("dtype", "fp16");
  m.optimizer = r.string("optimizer", "adamw");
  r.reject_unknown();

  try {
    m.dtype = parse_dtype(dtype);
  } catch (const std::exception&) {
    r.fail("dtype", "expected one of fp32, tf32, fp16, bf16, fp8, got \"" + dtype + "\"");
  }
  if (m.optimizer != "adamw" && m.optimizer != "sgd")
    r.fail("optimizer", "expected one of adamw, sgd, got \"" + m.optimizer + "\"");
  if (m.hidden % m.heads != 0)
    r.fail("heads", "expected a divisor of hidden (" + std::to_string(m.hidden) + "), got " + std::to_string(m.heads));
  if (m.top_k > m.experts)
    r.fail("top_k", "expected at most experts (" + std::to_string(m.experts) + "), got " + std::to_string(m.top_k));
  if (m.moe_every > m.layers)
    r.fail("moe_every",
           "expected at most layers (" + std::to_string(m.layers) + "), got " + std::to_string(m.moe_every));
  if (m.global_batch % m.micro_batch != 0)
    r.fail("global_batch", "expected a multiple of micro_batch (" + std::to_string(m.micro_batch) + "), got " +
                               std::to_string(m.global_batch));
  // Parameter counts are int64: the field ceilings keep each factor small, this keeps the total representable.
  const double params = static_cast<double>(m.layers) * (4.0 * m.hidden * m.hidden + 8.0 * m.hidden) +
                        static_cast<double>(m.moe_layers()) * m.experts *
                            (2.0 * m.hidden * static_cast<double>(m.ffn_hidden()) + m.ffn_hidden()) +
                        static_cast<double>(m.dense_ffn_layers()) * 2.0 * m.hidden * m.ffn_hidden() +
                        (static_cast<double>(m.vocab) + m.seq_len) * m.hidden;
  if (params > kMaxModelParams) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3g", params);
    r.fail("", std::string("the model has ") + buf + " parameters; at most 1e15 are supported");
  }
  return m;
}

json to_json(const ModelConfig& m) {
  return json{{"name", m.name},
              {"layers", m.layers},
              {"hidden", m.hidden},
              {"heads", m.heads},
              {"ffn_multiplier", m.ffn_multiplier},
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
}

}  // namespace moesys::core
