#pragma once
// Token routing of a whole generation, computed before the simulation from the run's workload model: one
// ranks x experts matrix per forward pass and MoE layer. The prefill routes batch x prompt tokens per rank, each
// decode step batch tokens. Precomputing keeps every rank's view identical and lets the memory plan size the
// expert buffers for the most tokens any rank's experts will receive.
#include <cstdint>
#include <string>
#include <vector>

#include "core/workload.hpp"
#include "policies/inference/config.hpp"

namespace moesys::policies::inference {

struct RoutingTables {
  std::vector<std::vector<core::RoutingMatrix>> passes;  // [pass][MoE layer]
  std::int64_t max_expert_tokens = 0;                    // most assignments one rank's experts receive in one layer

  const core::RoutingMatrix& at(int pass, int moe_layer) const {
    return passes[static_cast<std::size_t>(pass)][static_cast<std::size_t>(moe_layer)];
  }
  /// Assignments that rank `rank`'s experts receive in one layer (from every rank).
  static std::int64_t received(const core::RoutingMatrix& m, int rank, int experts_per_rank);
};

/// `file` and `path` name the workload object in errors (ConfigError from make_routing_model).
RoutingTables make_routing(const InferenceConfig& c, const std::string& file, const std::string& path);

}  // namespace moesys::policies::inference
