#pragma once
// One MoE FFN layer with expert parallelism, written against core::Runtime: GShard gate (softmax, top-k,
// capacity, token drop), dispatch into [experts, capacity] slots, all-to-all to the experts' owners, batched
// expert FFNs (GEMM, bias, GeLU, GEMM, bias), all-to-all back and weighted combine; backward through all of it.
// Each of the group's P ranks owns experts / P consecutive experts. Buffers are allocated once per layer.
#include <cstdint>
#include <string>
#include <vector>

#include "core/runtime.hpp"
#include "exec/model/tensors.hpp"

namespace moesys::exec::model {

struct MoeLayerConfig {
  std::int64_t tokens = 0;  // per rank and micro-batch
  std::int64_t hidden = 0;
  std::int64_t ffn_hidden = 0;
  int experts = 0;  // in the whole layer; a multiple of the group size
  int top_k = 2;
  double capacity_factor = 1.2;
  core::CollectiveAlgo all_to_all = core::CollectiveAlgo::direct;
  core::Tier tier = core::Tier::hbm;
  /// Where the expert parameters (value, gradient, AdamW moments) live. Not HBM: the layer computes with tensors
  /// that an ExpertRing fetched into an HBM slot and bound with bind_experts().
  core::Tier expert_tier = core::Tier::hbm;
};

/// The expert tensors a layer computes with: values read by forward and backward, gradients written by backward.
struct ExpertTensors {
  core::Buffer w1, b1, w2, b2;
  core::Buffer d_w1, d_b1, d_w2, d_b2;
};

class MoeLayer {
public:
  /// Gate weights are seeded by `seed` (identical on every rank); expert e's weights by seed and e.
  MoeLayer(core::Runtime& rt, core::Group group, MoeLayerConfig config, std::uint64_t seed, std::string name);
  ~MoeLayer();
  MoeLayer(const MoeLayer&) = delete;
  MoeLayer& operator=(const MoeLayer&) = delete;

  /// out[T,H] = MoE(x[T,H]) (no residual). `x` must stay unchanged until backward.
  void forward(const core::Buffer& x, const core::Buffer& out);
  /// d_x = dL/dx from d_out; writes every parameter gradient (overwrites, does not accumulate).
  void backward(const core::Buffer& d_out, const core::Buffer& d_x);

  std::vector<Param*> params();
  /// This rank's expert parameters: w1, b1, w2, b2 (the order of ExpertTensors).
  std::vector<Param*> expert_params() { return {&w1_, &b1_, &w2_, &b2_}; }
  /// Computes with `t` (e.g. an HBM slot) instead of the layer's own expert parameters, until unbind_experts().
  void bind_experts(const ExpertTensors& t) { ex_ = t; }
  void unbind_experts() { ex_ = own_experts(); }
  ExpertTensors own_experts() const;
  /// The last kernel issued by forward or backward: the layer's bound tensors are in use until it completes.
  core::Event last_event() const { return last_; }
  /// Tokens routed to each expert by this rank in the last forward, before capacity (int32[experts]).
  const core::Buffer& routed_counts() const { return counts_; }
  std::int64_t capacity() const { return capacity_; }
  int local_experts() const { return local_; }
  const MoeLayerConfig& config() const { return cfg_; }

private:
  core::Buffer buf(std::int64_t elems, const char* tag);
  void run(const core::Kernel& kernel, const char* name);
  void exchange(const core::Buffer& send, const core::Buffer& recv, const char* what);

  core::Runtime& rt_;
  core::Group group_;
  MoeLayerConfig cfg_;
  std::string name_;
  int P_ = 1, local_ = 1;
  std::int64_t capacity_ = 0, slots_ = 0, rows_ = 0;  // rows_: tokens each local expert processes (P * capacity)
  Param gate_, w1_, b1_, w2_, b2_;
  ExpertTensors ex_;  // what forward / backward compute with
  core::Buffer x_;     // the forward input, kept for backward
  core::Event last_;  // the last kernel issued
  // forward activations
  core::Buffer logits_, probs_, experts_, slot_, weights_, counts_, send_, recv_, xin_, h_, a_, y_, yback_, ycomb_;
  // backward scratch
  core::Buffer d_w_, d_ycomb_, d_logits_;
  std::vector<core::Buffer*> owned_;
};

}  // namespace moesys::exec::model
