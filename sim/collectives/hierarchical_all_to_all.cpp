// Resource-aware (hierarchical) all-to-all of the MoESys paper: first inside each node over NVLink, moving
// every byte to the local GPU whose index matches its destination's; then among GPUs of the same local index
// across nodes, i.e. along one rail. Inter-node messages become GPUs-per-node times fewer and larger, and no
// byte crosses the spine of a rail-optimised fabric.
#include <map>
#include <stdexcept>

#include "sim/collectives.hpp"

namespace moesys::sim {

CollectivePlan plan_hierarchical_all_to_all(const core::ClusterSpec& spec, const CollectiveCall& call) {
  const std::size_t n = call.members.size();
  std::map<int, int> member_index;  // global GPU -> group index
  for (std::size_t i = 0; i < n; ++i) member_index[call.members[i]] = static_cast<int>(i);
  auto relay_of = [&](int src_gpu, int dst_gpu) {
    // The GPU on the source's node with the destination's local index.
    return spec.node_of(src_gpu) * spec.node.gpus + spec.local_of(dst_gpu);
  };
  // Both steps need the relay GPU to be a member; otherwise the group is not node-aligned.
  for (int s : call.members)
    for (int d : call.members)
      if (!member_index.count(relay_of(s, d)))
        throw std::invalid_argument("hierarchical all-to-all needs every node of the group to hold the same local GPUs");

  std::map<std::pair<int, int>, double> intra, inter;  // (src, dst) GPU -> bytes
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      double b = call.matrix[i][j];
      if (b <= 0 || i == j) continue;
      int s = call.members[i], d = call.members[j];
      int relay = relay_of(s, d);
      if (relay != s) intra[{s, relay}] += b;
      if (relay != d) inter[{relay, d}] += b;
    }
  CollectivePlan plan;
  for (auto* step : {&intra, &inter}) {
    if (step->empty()) continue;
    Stage stage;
    stage.latency_steps = 1;
    for (const auto& [pair, bytes] : *step) stage.transfers.push_back({pair.first, pair.second, bytes, bytes});
    plan.push_back(std::move(stage));
  }
  return plan;
}

}  // namespace moesys::sim
