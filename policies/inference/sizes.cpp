#include "policies/inference/sizes.hpp"

#include <algorithm>
#include <cstdio>

#include "core/units.hpp"

namespace moesys::policies::inference {

int WeightSizes::moe_layers() const {
  return static_cast<int>(std::count_if(moe_index.begin(), moe_index.end(), [](int m) { return m >= 0; }));
}

std::uint64_t WeightSizes::dense_bytes() const {
  std::uint64_t total = embedding_bytes;
  for (auto b : layer_dense_bytes) total += b;
  return total;
}

std::uint64_t WeightSizes::expert_bytes() const {
  return layer_expert_bytes * static_cast<std::uint64_t>(moe_layers());
}

std::uint64_t WeightSizes::layer_bytes(int layer) const {
  const auto i = static_cast<std::size_t>(layer);
  return layer_dense_bytes[i] + (moe_index[i] >= 0 ? layer_expert_bytes : 0);
}

std::uint64_t WeightSizes::max_layer_bytes() const {
  std::uint64_t m = 0;
  for (int l = 0; l < layers(); ++l) m = std::max(m, layer_bytes(l));
  return m;
}

WeightSizes weight_sizes(const InferenceConfig& c) {
  const core::ModelConfig& m = c.model;
  const auto e = static_cast<std::uint64_t>(m.param_bytes_per_param());
  WeightSizes w;
  w.embedding_bytes = static_cast<std::uint64_t>(m.embedding_params() + 2 * std::int64_t{m.hidden}) * e;
  int moe = 0;
  for (int l = 0; l < m.layers; ++l) {
    const bool is_moe = m.is_moe_layer(l);
    // Dense weights are replicated on every rank: attention, layernorms, and the gate (MoE) or the FFN (dense).
    const std::int64_t params = m.attention_params_per_layer() + m.layernorm_params_per_layer() +
                                (is_moe ? m.gate_params_per_layer() : m.expert_params_per_expert());
    w.layer_dense_bytes.push_back(static_cast<std::uint64_t>(params) * e);
    w.moe_index.push_back(is_moe ? moe++ : -1);
  }
  w.layer_expert_bytes = static_cast<std::uint64_t>(c.experts_per_gpu() * m.expert_params_per_expert()) * e;
  return w;
}

std::uint64_t kv_cache_bytes(const InferenceConfig& c, int batch) {
  const auto e = static_cast<std::uint64_t>(c.model.param_bytes_per_param());
  return 2ull * static_cast<std::uint64_t>(c.model.layers) * static_cast<std::uint64_t>(batch) *
         static_cast<std::uint64_t>(c.max_context()) * static_cast<std::uint64_t>(c.model.hidden) * e;
}

std::uint64_t activation_bytes(const InferenceConfig& c, int batch, std::int64_t max_expert_tokens) {
  const core::ModelConfig& m = c.model;
  const double e = m.param_bytes_per_param();
  const double h = m.hidden, f = m.ffn_hidden();
  const double tokens = static_cast<double>(batch) * c.prompt_tokens;
  const double assignments = tokens * m.top_k;
  // Expert buffers hold the most tokens any rank's experts receive; a dense FFN layer (moe_every > 1) holds all.
  const double ffn_tokens = m.moe_every > 1 ? std::max(static_cast<double>(max_expert_tokens), tokens)
                                            : static_cast<double>(max_expert_tokens);
  const double elems = 2 * tokens * h               // hidden state and residual
                       + 3 * tokens * h             // Q, K, V
                       + tokens * h                 // attention output
                       + 2 * assignments * h        // tokens dispatched to experts and their results coming back
                       + ffn_tokens * (2 * h + f);  // FFN input, output and hidden layer
  const double logits = static_cast<double>(batch) * m.vocab * 4.0;  // fp32 logits of the last position
  return static_cast<std::uint64_t>(elems * e + logits);
}

std::string gib(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / core::kGiB);
  return buf;
}

}  // namespace moesys::policies::inference
