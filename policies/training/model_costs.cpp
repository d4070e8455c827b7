#include "policies/training/model_costs.hpp"

namespace moesys::policies::training {

std::vector<std::int64_t> ffn_tensors(const core::ModelConfig& m, std::int64_t f) {
  const std::int64_t h = m.hidden, in = m.ffn_in_factor() * f;
  return {h * in, m.biases ? in : 0, f * h, m.biases ? h : 0};
}

std::vector<std::int64_t> layer_dense_tensors(const core::ModelConfig& m, int layer) {
  const std::int64_t h = m.hidden, q = m.q_width(), kv = m.kv_width(), qkv = q + 2 * kv;
  const std::int64_t norm_bias = m.norm == core::NormKind::layernorm ? h : 0;
  const bool mla = m.attention == core::AttentionKind::mla;
  // MLA: every projection in the kQkv slot (mla_attention.cpp), the latent norms in the QK-norm slots, no biases.
  const std::int64_t out = m.ctx_width() * h;
  const std::int64_t projections = mla ? m.attention_params_per_layer() - m.mla.q_lora_rank - m.mla.kv_lora_rank - out
                                       : h * qkv;
  std::vector<std::int64_t> t = {projections, m.biases && !mla ? qkv : 0, out, m.biases && !mla ? h : 0,
                                 h,           norm_bias,                  h,   norm_bias};
  if (m.is_moe_layer(layer)) {
    t.push_back(h * m.experts);
    t.push_back(m.gate == core::GateKind::sigmoid ? m.experts : 0);
    t.push_back(0), t.push_back(0);
    if (m.shared_experts > 0) {
      // Shared experts side by side are one FFN of the summed width (each keeps its own output bias).
      auto shared = ffn_tensors(m, m.shared_hidden());
      shared[3] *= m.shared_experts;
      t.insert(t.end(), shared.begin(), shared.end());
    } else {
      t.insert(t.end(), {0, 0, 0, 0});
    }
  } else {
    for (auto x : ffn_tensors(m, m.ffn_hidden())) t.push_back(x);
    t.insert(t.end(), {0, 0, 0, 0});
  }
  const std::int64_t qk = m.qk_norm ? m.head_dim() : 0;
  if (mla)
    t.insert(t.end(), {m.mla.q_lora_rank, m.mla.kv_lora_rank});
  else
    t.insert(t.end(), {qk, qk});
  if (m.is_mtp_layer(layer))
    t.insert(t.end(), {h, norm_bias, h, norm_bias, 2 * h * h, h, norm_bias});
  else
    t.insert(t.end(), {0, 0, 0, 0, 0, 0, 0});
  return t;
}

std::vector<std::int64_t> embedding_tensors(const core::ModelConfig& m) {
  const std::int64_t h = m.hidden, V = m.vocab;
  return {V * h, m.learned_positions ? std::int64_t{m.seq_len} * h : 0, h,
          m.norm == core::NormKind::layernorm ? h : 0, m.tied_embeddings ? 0 : V * h};
}

std::vector<std::int64_t> expert_tensors(const core::ModelConfig& m) {
  return ffn_tensors(m, m.expert_hidden());
}

std::int64_t sum(const std::vector<std::int64_t>& v) {
  std::int64_t s = 0;
  for (auto x : v) s += x;
  return s;
}

}  // namespace moesys::policies::training
