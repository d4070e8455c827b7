#pragma once
// A small GPT-MoE decoder written once against core::Runtime: token + learned position embeddings; per block a
// pre-layernorm causal self-attention (Q, K, V, O projections) and a pre-layernorm MoE FFN, both residual; a final
// layernorm, an output projection and softmax cross-entropy. Data parallel over the world for the dense and gate
// parameters (gradients all-reduced), expert parallel for the experts; AdamW. Runs on the CPU runtime with real
// tensors, and in the simulator, where buffers carry sizes only.
// Kept only for the old default path of `moesys validate` (cli/cmd_validate.cpp); the training program of
// policies/training is the one implementation of the model, and this file goes when that path does.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/runtime.hpp"
#include "core/workload.hpp"
#include "exec/model/moe_layer.hpp"

namespace moesys::exec::model {

struct GptMoeConfig {
  int vocab = 64, seq_len = 16, micro_batch = 2;  // micro_batch sequences per rank
  int hidden = 32, heads = 4, layers = 2, ffn_multiplier = 4;
  int experts = 4, top_k = 2;
  double capacity_factor = 1.25;
  double lr = 3e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  core::CollectiveAlgo all_to_all = core::CollectiveAlgo::direct;
  std::uint64_t seed = 1;
  std::int64_t tokens() const { return std::int64_t{micro_batch} * seq_len; }
};

class GptMoe {
public:
  GptMoe(core::Runtime& rt, GptMoeConfig config);
  ~GptMoe();
  GptMoe(const GptMoe&) = delete;
  GptMoe& operator=(const GptMoe&) = delete;

  /// Uploads this rank's tokens and next-token targets (tokens() ints each).
  void set_batch(const std::vector<int>& ids, const std::vector<int>& targets);
  /// Forward and backward of the current batch; returns the mean loss over every rank's tokens (0 in the simulator).
  double forward_backward();
  /// Forward only; returns the mean loss over every rank's tokens (0 in the simulator).
  double forward();
  /// All-reduces replicated gradients and applies AdamW to every parameter.
  void optimizer_step();
  /// forward_backward + optimizer_step.
  double train_step();

  /// Routing of the last forward: matrix[layer] is ranks x experts (gathered on every rank; empty in the simulator).
  std::vector<core::RoutingMatrix> last_routing();
  std::vector<Param*> params();
  MoeLayer& moe(int layer) { return *blocks_[static_cast<std::size_t>(layer)].moe; }
  const GptMoeConfig& config() const { return cfg_; }

private:
  struct Block {
    Param ln1_g, ln1_b, wq, wk, wv, wo, ln2_g, ln2_b;
    std::unique_ptr<MoeLayer> moe;
    core::Buffer x0, n1, mean1, rstd1, q, k, v, att, x1, n2, mean2, rstd2, m;
  };
  core::Buffer act(std::int64_t elems);
  void run(const core::Kernel& kernel, const char* name);
  void all_reduce_sum(const core::Buffer& b, std::int64_t elems);
  double reduce_loss();
  double forward_pass(bool then_backward);

  core::Runtime& rt_;
  GptMoeConfig cfg_;
  core::Group world_;
  std::int64_t T_ = 0, H_ = 0;
  Param tok_, pos_, lnf_g_, lnf_b_, wout_;
  std::vector<Block> blocks_;
  core::Buffer ids_, targets_, xf_, nf_, meanf_, rstdf_, logits_, d_logits_, loss_, gather_;
  core::Buffer dx_, dn_, dtmp_, dq_, dk_, dv_, datt_;
  std::vector<core::Buffer> owned_;
  core::Event last_;
  int step_ = 0;
};

/// Synthetic next-token task: sequences follow t[i+1] = (t[i] * 3 + 1) mod vocab from a random start, so the
/// loss can fall from ln(vocab) towards 0. Deterministic in (seed, rank, step).
void synthetic_batch(const GptMoeConfig& c, int rank, int step, std::vector<int>& ids, std::vector<int>& targets);

}  // namespace moesys::exec::model
