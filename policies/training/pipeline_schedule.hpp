#pragma once
// The order in which one pipeline stage runs the forward and backward passes of a step's micro-batches: 1F1B
// (PipeDream-Flush, as Megatron-LM runs it without virtual stages). Stage s of P first runs min(P - 1 - s, M)
// forward passes (warm-up), then alternates one forward and one backward until every forward has run, then runs the
// remaining backward passes (cool-down). Stage s holds at most P - s micro-batches' activations at once, and with one
// stage (P = 1) the order is F0 B0 F1 B1 ..., plain gradient accumulation.
// With V virtual stages (interleaved 1F1B, Narayanan et al. 2021, as Megatron-LM orders it) each stage holds V model
// chunks (chunk v of stage s is chunk v * P + s of the model) and runs M x V passes per direction: pass i of a
// direction is micro-batch (i / (P V)) P + i mod P of chunk (i / P) mod V (reversed for backward), after
// (P - s - 1) 2 + (V - 1) P warm-up forwards. The bubble shrinks V-fold; M must be a multiple of P.
#include <algorithm>
#include <vector>

namespace moesys::policies::training {

struct PipelinePass {
  bool forward = true;
  int micro = 0;
  int chunk = 0;  // the stage's model chunk (virtual stage), 0 without interleaving
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

inline std::vector<PipelinePass> interleaved_1f1b(int stages, int stage, int micro_batches, int chunks) {
  if (chunks == 1) return one_f_one_b(stages, stage, micro_batches);
  const int total = micro_batches * chunks;
  const int warmup = micro_batches == stages ? total : std::min((stages - stage - 1) * 2 + (chunks - 1) * stages, total);
  auto pass = [&](int i, bool forward) {
    const int in_group = i % (stages * chunks), chunk = in_group / stages;
    return PipelinePass{forward, (i / (stages * chunks)) * stages + i % stages, forward ? chunk : chunks - 1 - chunk};
  };
  std::vector<PipelinePass> order;
  for (int i = 0; i < warmup; ++i) order.push_back(pass(i, true));
  for (int i = 0; i < total - warmup; ++i) {
    order.push_back(pass(i + warmup, true));
    order.push_back(pass(i, false));
  }
  for (int i = total - warmup; i < total; ++i) order.push_back(pass(i, false));
  return order;
}

}  // namespace moesys::policies::training
