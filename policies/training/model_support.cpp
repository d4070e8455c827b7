#include "policies/training/model_support.hpp"

#include "core/error.hpp"

namespace moesys::policies::training {

void check_program_runs(const core::ModelConfig& m, const std::string& file) {
  auto refuse = [&file](const std::string& field, const std::string& what) {
    throw core::ConfigError(file, "model." + field,
                            what + ": not yet run by the training program (its parameter and FLOP counts are)");
  };
  if (m.attention == core::AttentionKind::mla) refuse("attention.kind", "multi-head latent attention");
  if (m.attention == core::AttentionKind::gqa || m.head_dim_elems > 0) refuse("attention", "grouped-query attention");
  if (m.qk_norm) refuse("attention.qk_norm", "query and key norms");
  if (m.gate == core::GateKind::sigmoid) refuse("gate", "the sigmoid gate with a selection bias");
  if (m.max_groups_per_token > 0) refuse("max_groups_per_token", "group-limited routing");
  if (m.mtp_layers > 0) refuse("mtp_layers", "multi-token prediction");
  if (m.activation == core::Activation::swiglu) refuse("activation", "SwiGLU");
  if (m.norm == core::NormKind::rmsnorm) refuse("norm", "RMSNorm");
  if (!m.biases || !m.learned_positions || !m.tied_embeddings) refuse("biases", "models without the paper's biases, positions or tied output");
  if (m.shared_experts > 0) refuse("shared_experts", "shared experts");
  if (m.first_dense_layers > 0) refuse("first_dense_layers", "dense first layers");
  if (m.dense_ffn_width > 0 || m.expert_ffn_width > 0) refuse("expert_hidden", "FFN widths in elements");
  if (m.fp8_gemm || m.fp8_dispatch) refuse("fp8_gemm", "FP8");
}

}  // namespace moesys::policies::training
