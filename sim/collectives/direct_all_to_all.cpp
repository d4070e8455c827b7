// Direct all-to-all(v), as NCCL does it: every member sends to every other member at once (grouped
// point-to-point), one algorithm step. The call's latency grows with the peers: each peer's connection is posted
// and progressed in turn (Calibration::alltoall_peer_latency_s), and a call with a peer on another node waits for
// the network's latency.
#include <algorithm>

#include "sim/collectives.hpp"

namespace moesys::sim {

Stage all_to_all_stage(const core::ClusterSpec& spec, const core::Calibration& cal, std::vector<Transfer> transfers,
                       int peers) {
  Stage stage;
  bool network = false;
  for (const Transfer& t : transfers) network = network || spec.node_of(t.src_gpu) != spec.node_of(t.dst_gpu);
  (network ? stage.net_latency_steps : stage.latency_steps) = 1;
  stage.fixed_latency_s = std::max(0, peers - 1) * cal.alltoall_peer_latency_s;
  stage.transfers = std::move(transfers);
  return stage;
}

CollectivePlan plan_direct_all_to_all(const core::ClusterSpec& spec, const core::Calibration& cal,
                                      const CollectiveCall& call) {
  const std::size_t n = call.members.size();
  std::vector<Transfer> transfers;
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j)
      if (i != j && call.matrix[i][j] > 0)
        transfers.push_back({call.members[i], call.members[j], call.matrix[i][j], call.matrix[i][j],
                             call.point_to_point ? cal.p2p_efficiency : 1.0});
  return {all_to_all_stage(spec, cal, std::move(transfers), static_cast<int>(n) - 1)};
}

}  // namespace moesys::sim
