// Resource-aware (hierarchical) all-to-all of the MoESys paper: first inside each node over NVLink, moving
// every byte to the local GPU whose index matches its destination's; then among GPUs of the same local index
// across nodes, i.e. along one rail. Inter-node messages become GPUs-per-node times fewer and larger, and no
// byte crosses the spine of a rail-optimised fabric.
#include <algorithm>
#include <stdexcept>
#include <vector>

#include "sim/collectives.hpp"

namespace moesys::sim {

CollectivePlan plan_hierarchical_all_to_all(const core::ClusterSpec& spec, const core::Calibration& cal,
                                            const CollectiveCall& call) {
  const std::size_t n = call.members.size();
  // Group index of every member GPU (-1 for GPUs outside the group); dense because this runs per collective.
  std::vector<int> index_of(static_cast<std::size_t>(spec.total_gpus()), -1);
  for (std::size_t i = 0; i < n; ++i) index_of[static_cast<std::size_t>(call.members[i])] = static_cast<int>(i);
  // The relay of (source i, destination j) is the GPU on i's node with j's local index; it must be a member.
  auto relay_of = [&](std::size_t i, std::size_t j) {
    const int g = spec.node_of(call.members[i]) * spec.node.gpus + spec.local_of(call.members[j]);
    const int r = index_of[static_cast<std::size_t>(g)];
    if (r < 0)
      throw std::invalid_argument("hierarchical all-to-all needs every node of the group to hold the same local GPUs");
    return static_cast<std::size_t>(r);
  };
  // bytes[a * n + b] from member a to member b in each step.
  std::vector<double> intra(n * n, 0.0), inter(n * n, 0.0);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      const double b = call.matrix[i][j];
      if (b <= 0 || i == j) continue;
      const std::size_t relay = relay_of(i, j);
      if (relay != i) intra[i * n + relay] += b;
      if (relay != j) inter[relay * n + j] += b;
    }
  CollectivePlan plan;
  for (const auto* step : {&intra, &inter}) {
    Stage stage;
    for (std::size_t a = 0; a < n; ++a)
      for (std::size_t b = 0; b < n; ++b)
        if (const double bytes = (*step)[a * n + b]; bytes > 0)
          stage.transfers.push_back({call.members[a], call.members[b], bytes, bytes});
    if (!stage.transfers.empty())
      plan.push_back(all_to_all_stage(spec, cal, std::move(stage)));
  }
  return plan;
}

}  // namespace moesys::sim
