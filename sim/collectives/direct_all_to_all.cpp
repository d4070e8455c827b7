// Direct all-to-all(v), as NCCL does it: every member sends to every other member at once (grouped
// point-to-point), one algorithm step. A call with a peer on another node waits for the network's latency, and its
// latency grows with those peers: the kernel moves NVLink peers' data in parallel, but each network peer's send and
// receive are posted by NCCL's proxy thread in turn (Calibration::alltoall_net_peer_latency_s). Its messages
// between rails may be forwarded through the destination's rail (PXN). A message inside a node runs on a few of
// NCCL's channels of its own, as many as its size earns (p2p_channels.cpp), moves no faster than they do, and ramps
// on its own size: its chunks are handed over with their own flags on those channels, whatever the other peers'
// messages do. A message across the network ramps on all its sender sends over the network: one proxy thread
// feeds the NIC every peer's chunks, and the NIC's pipeline fills with the sum.
#include <algorithm>
#include <unordered_map>
#include <utility>
#include <vector>

#include "sim/collectives.hpp"

namespace moesys::sim {

std::shared_ptr<const DenseAllToAll> make_dense_all_to_all(const core::ClusterSpec& spec, std::vector<int> members,
                                                           std::vector<std::vector<double>> matrix, double fraction,
                                                           const P2pChannelRule& channel_rule,
                                                           double channel_bytes_per_s) {
  DenseAllToAll d{std::move(members), std::move(matrix), fraction, {}, {}, 0, channel_rule, channel_bytes_per_s};
  const std::size_t n = d.members.size();
  d.node.resize(n);
  for (std::size_t i = 0; i < n; ++i) d.node[i] = spec.node_of(d.members[i]);
  d.network_bytes.assign(n, 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    int network_peers = 0;
    for (std::size_t j = 0; j < n; ++j) {
      const double b = d.matrix[i][j];
      if (i == j || b <= 0 || d.node[i] == d.node[j]) continue;
      d.network_bytes[i] += b;
      ++network_peers;
    }
    d.most_network_peers = std::max(d.most_network_peers, network_peers);
  }
  return std::make_shared<const DenseAllToAll>(std::move(d));
}

Stage all_to_all_stage(const core::ClusterSpec& spec, const core::Calibration& cal, Stage stage) {
  // Per sender of the listed transfers (a dense all-to-all counts its own): network peers (the call waits for the
  // busiest proxy) and the bytes in flight to them.
  struct Sender {
    int net_peers = 0;
    double network_bytes = 0;
  };
  std::unordered_map<int, Sender> senders;
  int most = stage.dense ? stage.dense->most_network_peers : 0;
  for (const Transfer& t : stage.transfers) {
    Sender& s = senders[t.src_gpu];
    if (spec.node_of(t.src_gpu) != spec.node_of(t.dst_gpu)) {
      most = std::max(most, ++s.net_peers);
      s.network_bytes += t.bytes;
    }
  }
  for (Transfer& t : stage.transfers) {
    t.message_bytes = spec.node_of(t.src_gpu) != spec.node_of(t.dst_gpu) ? senders[t.src_gpu].network_bytes : t.bytes;
    t.point_to_point = true;
  }
  (most > 0 ? stage.net_latency_steps : stage.latency_steps) = 1;
  // A network message waits for its receiver's buffer: the receiver posts it (NCCL's IB transport writes the
  // buffer's address into the sender's FIFO) as the call starts, so a one-shot exchange pays one more network
  // latency before its data leaves; a ring's steps post theirs ahead and pipeline it away.
  stage.fixed_latency_s = most * cal.alltoall_net_peer_latency_s + (most > 0 ? cal.net_step_latency_s : 0.0);
  return stage;
}

CollectivePlan plan_direct_all_to_all(const core::ClusterSpec& spec, const core::Calibration& cal,
                                      const CollectiveCall& call) {
  Stage stage;
  stage.pxn = true;
  // NCCL's communicator: the group's for an all-to-all, the world's for a send/recv (CollectiveCall).
  const int ranks = call.communicator_ranks > 0 ? call.communicator_ranks : static_cast<int>(call.members.size());
  const int nodes = call.communicator_nodes > 0 ? call.communicator_nodes : nodes_spanned(spec, call.members);
  stage.dense = make_dense_all_to_all(spec, call.members, call.matrix, call.point_to_point ? cal.p2p_efficiency : 1.0,
                                      p2p_channel_rule(spec, ranks, nodes), cal.p2p_channel_bytes_per_s);
  return single_stage(all_to_all_stage(spec, cal, std::move(stage)));
}

}  // namespace moesys::sim
