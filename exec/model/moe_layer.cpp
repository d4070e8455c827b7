#include "exec/model/moe_layer.hpp"

#include <cmath>
#include <stdexcept>

#include "core/model_config.hpp"
#include "exec/model/ops.hpp"

namespace moesys::exec::model {

using core::streams::kComm;
using core::streams::kCompute;

MoeLayer::MoeLayer(core::Runtime& rt, core::Group group, MoeLayerConfig config, std::uint64_t seed, std::string name)
    : rt_(rt), group_(std::move(group)), cfg_(config), name_(std::move(name)) {
  P_ = group_.size();
  if (cfg_.experts % P_ != 0)
    throw std::invalid_argument(name_ + ": " + std::to_string(cfg_.experts) + " experts do not divide over " +
                                std::to_string(P_) + " ranks");
  local_ = cfg_.experts / P_;
  capacity_ = core::gshard_capacity(cfg_.tokens, cfg_.top_k, cfg_.experts, cfg_.capacity_factor);
  slots_ = capacity_ * cfg_.experts;
  rows_ = capacity_ * P_;
  const std::int64_t H = cfg_.hidden, F = cfg_.ffn_hidden, T = cfg_.tokens, E = cfg_.experts, K = cfg_.top_k;
  const int first = group_.index_of(rt_.rank()) * local_;
  gate_ = make_param(rt_, name_ + ".gate", H * E, cfg_.tier, 1.0 / std::sqrt(double(H)), seed, true);
  // Experts are initialised by global expert id, so a layer's math does not depend on how experts are placed.
  auto expert_param = [&](const std::string& what, std::int64_t per, double stddev, std::uint64_t salt) {
    Param p = make_param(rt_, name_ + "." + what, per * local_, cfg_.expert_tier, 0, 0, false);
    std::vector<float> all;
    for (int e = 0; e < local_; ++e) {
      auto part = stddev > 0 ? normal_floats(per, stddev, seed * 1000003 + salt * 1009 + std::uint64_t(first + e))
                             : std::vector<float>(std::size_t(per), 0.f);
      all.insert(all.end(), part.begin(), part.end());
    }
    upload(rt_, p.value, all.data(), f32_bytes(per * local_));
    return p;
  };
  w1_ = expert_param("w1", H * F, 1.0 / std::sqrt(double(H)), 1);
  b1_ = expert_param("b1", F, 0, 2);
  w2_ = expert_param("w2", F * H, 1.0 / std::sqrt(double(F)), 3);
  b2_ = expert_param("b2", H, 0, 4);
  ex_ = own_experts();
  const std::int64_t L = local_;
  logits_ = buf(T * E, "moe"), probs_ = buf(T * E, "moe"), experts_ = buf(T * K, "moe");
  slot_ = buf(T * K, "moe"), weights_ = buf(T * K, "moe"), counts_ = buf(E, "moe");
  send_ = buf(slots_ * H, "moe"), recv_ = buf(slots_ * H, "moe"), xin_ = buf(L * rows_ * H, "moe");
  h_ = buf(L * rows_ * F, "moe"), a_ = buf(L * rows_ * F, "moe"), y_ = buf(L * rows_ * H, "moe");
  yback_ = buf(slots_ * H, "moe"), ycomb_ = buf(slots_ * H, "moe");
  d_w_ = buf(T * K, "moe"), d_ycomb_ = buf(slots_ * H, "moe"), d_logits_ = buf(T * E, "moe");
  owned_ = {&logits_, &probs_, &experts_, &slot_, &weights_, &counts_, &send_, &recv_, &xin_, &h_, &a_,
            &y_, &yback_, &ycomb_, &d_w_, &d_ycomb_, &d_logits_};
}

ExpertTensors MoeLayer::own_experts() const {
  return {w1_.value, b1_.value, w2_.value, b2_.value, w1_.grad, b1_.grad, w2_.grad, b2_.grad};
}

void MoeLayer::run(const core::Kernel& kernel, const char* name) { last_ = rt_.compute(kCompute, kernel, name); }

MoeLayer::~MoeLayer() {
  try {
    rt_.synchronize();
    for (auto* p : params()) free_param(rt_, *p);
    for (auto* b : owned_) rt_.free(*b);
  } catch (...) {  // a failed runtime: its memory goes with it
  }
}

core::Buffer MoeLayer::buf(std::int64_t elems, const char* tag) {
  return rt_.alloc(cfg_.tier, f32_bytes(std::max<std::int64_t>(elems, 1)), tag);
}

std::vector<Param*> MoeLayer::params() { return {&gate_, &w1_, &b1_, &w2_, &b2_}; }

// Every rank's send buffer is [experts][capacity][H]; member p owns experts [p*local, (p+1)*local), so each peer
// gets one contiguous, equally sized block, and the receive buffer is [P][local][capacity][H].
void MoeLayer::exchange(const core::Buffer& send, const core::Buffer& recv, const char* what) {
  const std::uint64_t block = f32_bytes(std::int64_t{local_} * capacity_ * cfg_.hidden);
  std::vector<std::uint64_t> sizes(static_cast<std::size_t>(P_), block);
  (void)what;
  rt_.stream_wait(kComm, last_);  // the all-to-all reads what the compute stream just wrote
  rt_.stream_wait(kCompute, rt_.all_to_all(kComm, group_, send, sizes, recv, sizes, cfg_.all_to_all));
}

void MoeLayer::forward(const core::Buffer& x, const core::Buffer& out) {
  using namespace ops;
  const std::int64_t H = cfg_.hidden, F = cfg_.ffn_hidden, T = cfg_.tokens, E = cfg_.experts, K = cfg_.top_k;
  const std::int64_t L = local_, C = capacity_, R = rows_;
  x_ = x;
  run(gemm(T, E, H, x, gate_.value, logits_), "gate:logits");
  run(gate_topk(logits_, probs_, experts_, slot_, weights_, counts_, T, E, K, C), "gate:topk");
  run(dispatch(x, slot_, send_, T, H, K, slots_), "dispatch:permute");
  exchange(send_, recv_, "dispatch");
  run(block_transpose(recv_, xin_, P_, L, C * H), "dispatch:regroup");
  run(gemm(R, F, H, xin_, ex_.w1, h_, false, false, false, L), "expert:fc1");
  run(add_bias(h_, ex_.b1, L, R, F), "expert:bias1");
  run(gelu(h_, a_, L * R * F), "expert:gelu");
  run(gemm(R, H, F, a_, ex_.w2, y_, false, false, false, L), "expert:fc2");
  run(add_bias(y_, ex_.b2, L, R, H), "expert:bias2");
  run(block_transpose(y_, yback_, L, P_, C * H), "combine:regroup");
  exchange(yback_, ycomb_, "combine");
  run(combine(ycomb_, slot_, weights_, out, T, H, K, slots_), "combine:weighted_sum");
}

void MoeLayer::backward(const core::Buffer& d_out, const core::Buffer& d_x) {
  using namespace ops;
  const std::int64_t H = cfg_.hidden, F = cfg_.ffn_hidden, T = cfg_.tokens, E = cfg_.experts, K = cfg_.top_k;
  const std::int64_t L = local_, C = capacity_, R = rows_;
  // Scratch reuse: recv_ holds d_y, send_ holds d_send; xin_/h_ hold the forward values the gradients need.
  run(combine_bwd(d_out, ycomb_, slot_, weights_, d_ycomb_, d_w_, T, H, K, slots_),
              "combine:bwd");
  exchange(d_ycomb_, yback_, "combine bwd");
  run(block_transpose(yback_, y_, P_, L, C * H), "combine:regroup_bwd");
  run(bias_grad(y_, ex_.d_b2, L, R, H), "expert:bias2_bwd");
  run(gemm(F, H, R, a_, y_, ex_.d_w2, true, false, false, L), "expert:fc2_wgrad");
  run(gemm(R, F, H, y_, ex_.w2, a_, false, true, false, L), "expert:fc2_dgrad");
  run(gelu_bwd(h_, a_, h_, L * R * F), "expert:gelu_bwd");
  run(bias_grad(h_, ex_.d_b1, L, R, F), "expert:bias1_bwd");
  run(gemm(H, F, R, xin_, h_, ex_.d_w1, true, false, false, L), "expert:fc1_wgrad");
  run(gemm(R, H, F, h_, ex_.w1, xin_, false, true, false, L), "expert:fc1_dgrad");
  run(block_transpose(xin_, recv_, L, P_, C * H), "dispatch:regroup_bwd");
  exchange(recv_, send_, "dispatch bwd");
  run(dispatch_bwd(send_, slot_, d_x, T, H, K, slots_), "dispatch:bwd");
  run(gate_bwd(probs_, experts_, weights_, d_w_, d_logits_, T, E, K), "gate:bwd");
  run(gemm(H, E, T, x_, d_logits_, gate_.grad, true, false, false), "gate:wgrad");
  run(gemm(T, H, E, d_logits_, gate_.value, d_x, false, true, true), "gate:dgrad");
}

}  // namespace moesys::exec::model
