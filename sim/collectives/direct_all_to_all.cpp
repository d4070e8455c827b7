// Direct all-to-all(v), as NCCL does it: every member sends to every other member at once (grouped
// point-to-point), one algorithm step.
#include "sim/collectives.hpp"

namespace moesys::sim {

CollectivePlan plan_direct_all_to_all(const core::ClusterSpec& spec, const CollectiveCall& call) {
  (void)spec;
  Stage stage;
  stage.latency_steps = 1;
  const std::size_t n = call.members.size();
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j)
      if (i != j && call.matrix[i][j] > 0)
        stage.transfers.push_back({call.members[i], call.members[j], call.matrix[i][j], call.matrix[i][j]});
  return {stage};
}

}  // namespace moesys::sim
