#pragma once
// Byte sizes of one rank's share of a model's weights in inference: resident tables, each decoder layer's dense
// weights, each MoE layer's local experts. The policies name these units when they explain why a run does not
// fit; what the run allocates comes from the program itself (plan.hpp).
#include <cstdint>
#include <string>
#include <vector>

#include "policies/inference/config.hpp"

namespace moesys::policies::inference {

struct WeightSizes {
  std::uint64_t embedding_bytes = 0;             // token + position tables and the final layernorm
  std::vector<std::uint64_t> layer_dense_bytes;  // per decoder layer: attention, layernorms, gate or dense FFN
  std::vector<int> moe_index;                    // per decoder layer: its index among MoE layers, or -1
  std::uint64_t layer_expert_bytes = 0;          // one MoE layer's experts held by this rank (E/G of them)

  int layers() const { return static_cast<int>(layer_dense_bytes.size()); }
  int moe_layers() const;
  std::uint64_t dense_bytes() const;   // embedding + every layer's dense weights
  std::uint64_t expert_bytes() const;  // every MoE layer's local experts
  /// Weights of decoder layer `layer` as DeepSpeed fetches it: dense part plus local experts for an MoE layer.
  std::uint64_t layer_bytes(int layer) const;
  std::uint64_t max_layer_bytes() const;
};

WeightSizes weight_sizes(const InferenceConfig& c);

/// "12.34 GiB"
std::string gib(double bytes);

}  // namespace moesys::policies::inference
