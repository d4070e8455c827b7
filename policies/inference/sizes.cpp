#include "policies/inference/sizes.hpp"

#include <algorithm>
#include <cstdio>

#include "core/units.hpp"
#include "policies/training/model_costs.hpp"

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
  // The program's own tensors (training/model_costs.hpp): the embedding unit (tables, final norm, untied output)
  // and each layer's dense weights, replicated on every rank: attention, norms, and the router with any shared
  // experts (MoE) or the FFN (dense).
  w.embedding_bytes = static_cast<std::uint64_t>(training::sum(training::embedding_tensors(m))) * e;
  int moe = 0;
  for (int l = 0; l < m.layers; ++l) {
    const bool is_moe = m.is_moe_layer(l);
    const std::int64_t params = training::sum(training::layer_dense_tensors(m, l));
    w.layer_dense_bytes.push_back(static_cast<std::uint64_t>(params) * e);
    w.moe_index.push_back(is_moe ? moe++ : -1);
  }
  w.layer_expert_bytes = static_cast<std::uint64_t>(c.experts_per_gpu() * m.expert_params_per_expert()) * e;
  return w;
}

std::string gib(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / core::kGiB);
  return buf;
}

}  // namespace moesys::policies::inference
