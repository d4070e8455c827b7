// Direct all-to-all(v), as NCCL does it: every member sends to every other member at once (grouped
// point-to-point), one algorithm step. A call with a peer on another node waits for the network's latency, and its
// latency grows with those peers: the kernel moves NVLink peers' data in parallel, but each network peer's send and
// receive are posted by NCCL's proxy thread in turn (Calibration::alltoall_net_peer_latency_s). Its messages
// between rails may be forwarded through the destination's rail (PXN).
#include <algorithm>
#include <vector>

#include "sim/collectives.hpp"

namespace moesys::sim {

Stage all_to_all_stage(const core::ClusterSpec& spec, const core::Calibration& cal, Stage stage) {
  // Network peers per sender (every pair appears once in a stage); the call waits for the busiest proxy.
  std::vector<int> net_peers(static_cast<std::size_t>(spec.total_gpus()), 0);
  int most = 0;
  stage.for_each_transfer([&](const Transfer& t) {
    if (spec.node_of(t.src_gpu) != spec.node_of(t.dst_gpu))
      most = std::max(most, ++net_peers[static_cast<std::size_t>(t.src_gpu)]);
  });
  (most > 0 ? stage.net_latency_steps : stage.latency_steps) = 1;
  stage.fixed_latency_s = most * cal.alltoall_net_peer_latency_s;
  return stage;
}

CollectivePlan plan_direct_all_to_all(const core::ClusterSpec& spec, const core::Calibration& cal,
                                      const CollectiveCall& call) {
  Stage stage;
  stage.pxn = true;
  stage.dense = std::make_shared<const DenseAllToAll>(
      DenseAllToAll{call.members, call.matrix, call.point_to_point ? cal.p2p_efficiency : 1.0});
  return {all_to_all_stage(spec, cal, std::move(stage))};
}

}  // namespace moesys::sim
