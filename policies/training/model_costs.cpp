#include "policies/training/model_costs.hpp"

namespace moesys::policies::training {

namespace {
std::uint64_t u(double x) {
  return static_cast<std::uint64_t>(x);
}
}  // namespace

std::uint64_t attention_activation_bytes(const core::ModelConfig& m, std::int64_t tokens) {
  const double a = core::dtype_bytes(m.dtype), h = m.hidden, n = static_cast<double>(tokens);
  return u(n * (6 * h * a + 4.0 * m.heads));
}

std::uint64_t moe_activation_bytes(const core::ModelConfig& m, std::int64_t tokens, std::int64_t rows_computed,
                                   std::int64_t rows_returned) {
  const double a = core::dtype_bytes(m.dtype), h = m.hidden, f = m.ffn_hidden(), n = static_cast<double>(tokens);
  const double per_token = 2 * h * a + 4.0 * m.experts + 4.0 * m.top_k;
  const double per_row = h * a + 2 * f * a;
  return u(n * per_token + static_cast<double>(rows_computed) * per_row + static_cast<double>(rows_returned) * h * a);
}

std::uint64_t dense_ffn_activation_bytes(const core::ModelConfig& m, std::int64_t tokens) {
  const double a = core::dtype_bytes(m.dtype), h = m.hidden, f = m.ffn_hidden(), n = static_cast<double>(tokens);
  return u(n * (2 * h * a + 2 * f * a));
}

std::uint64_t embedding_activation_bytes(const core::ModelConfig& m, std::int64_t tokens) {
  return u(static_cast<double>(tokens) * m.hidden * core::dtype_bytes(m.dtype));
}

std::uint64_t logits_activation_bytes(const core::ModelConfig& m, std::int64_t tokens) {
  return u(static_cast<double>(tokens) * m.vocab * (core::dtype_bytes(m.dtype) + 4.0));
}

std::vector<std::int64_t> layer_dense_tensors(const core::ModelConfig& m, int layer) {
  const std::int64_t h = m.hidden;
  std::vector<std::int64_t> t = {3 * h * h, 3 * h, h * h, h, h, h, h, h};
  if (m.is_moe_layer(layer)) {
    t.push_back(h * m.experts);
  } else {
    for (auto x : expert_tensors(m)) t.push_back(x);
  }
  return t;
}

std::vector<std::int64_t> embedding_tensors(const core::ModelConfig& m) {
  const std::int64_t h = m.hidden;
  return {std::int64_t{m.vocab} * h, std::int64_t{m.seq_len} * h, h, h};
}

std::vector<std::int64_t> expert_tensors(const core::ModelConfig& m) {
  const std::int64_t h = m.hidden, f = m.ffn_hidden();
  return {h * f, f, f * h, h};
}

std::int64_t sum(const std::vector<std::int64_t>& v) {
  std::int64_t s = 0;
  for (auto x : v) s += x;
  return s;
}

}  // namespace moesys::policies::training
