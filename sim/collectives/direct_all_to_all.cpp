// Direct all-to-all(v), as NCCL does it: every member sends to every other member at once (grouped
// point-to-point), one algorithm step. The call's latency grows with the peers: each peer's connection is posted
// and progressed in turn (Calibration::alltoall_peer_latency_s), and a call with a peer on another node waits for
// the network's latency. Its messages between rails may be forwarded through the destination's rail (PXN).
#include <algorithm>

#include "sim/collectives.hpp"

namespace moesys::sim {

Stage all_to_all_stage(const core::ClusterSpec& spec, const core::Calibration& cal, Stage stage, int peers) {
  bool network = false;
  stage.for_each_transfer([&](const Transfer& t) {
    network = network || spec.node_of(t.src_gpu) != spec.node_of(t.dst_gpu);
  });
  (network ? stage.net_latency_steps : stage.latency_steps) = 1;
  stage.fixed_latency_s = std::max(0, peers - 1) * cal.alltoall_peer_latency_s;
  return stage;
}

CollectivePlan plan_direct_all_to_all(const core::ClusterSpec& spec, const core::Calibration& cal,
                                      const CollectiveCall& call) {
  Stage stage;
  stage.pxn = true;
  stage.dense = std::make_shared<const DenseAllToAll>(
      DenseAllToAll{call.members, call.matrix, call.point_to_point ? cal.p2p_efficiency : 1.0});
  return {all_to_all_stage(spec, cal, std::move(stage), static_cast<int>(call.members.size()) - 1)};
}

}  // namespace moesys::sim
