#pragma once
// The order in which one pipeline stage runs the forward and backward passes of a step's micro-batches: 1F1B
// (PipeDream-Flush, as Megatron-LM runs it without virtual stages). Stage s of P first runs min(P - 1 - s, M)
// forward passes (warm-up), then alternates one forward and one backward until every forward has run, then runs the
// remaining backward passes (cool-down). Stage s holds at most P - s micro-batches' activations at once, and with one
// stage (P = 1) the order is F0 B0 F1 B1 ..., plain gradient accumulation.
#include <algorithm>
#include <vector>

namespace moesys::policies::training {

struct PipelinePass {
  bool forward = true;
  int micro = 0;
  bool operator==(const PipelinePass&) const = default;
};

inline std::vector<PipelinePass> one_f_one_b(int stages, int stage, int micro_batches) {
  const int warmup = std::min(stages - 1 - stage, micro_batches);
  std::vector<PipelinePass> order;
  int next_forward = 0, next_backward = 0;
  for (; next_forward < warmup; ++next_forward) order.push_back({true, next_forward});
  while (next_forward < micro_batches) {
    order.push_back({true, next_forward++});
    order.push_back({false, next_backward++});
  }
  while (next_backward < micro_batches) order.push_back({false, next_backward++});
  return order;
}

}  // namespace moesys::policies::training
