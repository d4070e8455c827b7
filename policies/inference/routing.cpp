#include "policies/inference/routing.hpp"

#include <algorithm>

namespace moesys::policies::inference {

std::int64_t RoutingTables::received(const core::RoutingMatrix& m, int rank, int experts_per_rank) {
  std::int64_t total = 0;
  for (int e = rank * experts_per_rank; e < (rank + 1) * experts_per_rank; ++e) total += m.expert_load(e);
  return total;
}

RoutingTables make_routing(const InferenceConfig& c, const std::string& file, const std::string& path) {
  const core::ModelConfig& m = c.model;
  auto model_for = [&](std::int64_t tokens_per_rank) {
    return core::make_routing_model(c.workload, file, path, c.gpus, m.experts, m.moe_layers(), tokens_per_rank,
                                    m.top_k);
  };
  auto prefill = model_for(std::int64_t{c.batch} * c.prompt_tokens);
  auto decode = model_for(c.batch);
  RoutingTables t;
  for (int pass = 0; pass < c.forward_passes(); ++pass) {
    std::vector<core::RoutingMatrix> layers;
    for (int layer = 0; layer < m.moe_layers(); ++layer) {
      layers.push_back(pass == 0 ? prefill->route(0, layer) : decode->route(pass, layer));
      for (int r = 0; r < c.gpus; ++r)
        t.max_expert_tokens =
            std::max(t.max_expert_tokens, RoutingTables::received(layers.back(), r, c.experts_per_gpu()));
    }
    t.passes.push_back(std::move(layers));
  }
  return t;
}

}  // namespace moesys::policies::inference
