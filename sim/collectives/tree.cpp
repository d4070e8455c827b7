// NCCL's tree all-reduce across nodes: inside each node the members form a chain ending at the GPU of the
// channel's NIC; the chain heads of all nodes form a binary tree. Data is reduced up the chains and the tree,
// then broadcast back down, pipelined in chunks, so every edge carries the channel's share of the buffer once in
// each direction and all of them run at once. Its latency grows with the chain length and the tree's depth
// instead of the number of ranks, which is why NCCL prefers it for small and medium sizes on many nodes.
#include <algorithm>
#include <cmath>
#include <map>

#include "sim/collectives.hpp"

namespace moesys::sim {

CollectivePlan plan_tree(const core::ClusterSpec& spec, const core::Calibration& cal, const CollectiveCall& call,
                         Protocol protocol) {
  const int n = static_cast<int>(call.members.size());
  if (n <= 1 || call.bytes <= 0) return {};
  // The rings' node segments give each channel's chain per node; every chain is turned to end at the GPU that
  // crosses the network, as the ring's does.
  const auto rings = ring_orders(spec, call.members);
  const double share = call.bytes / static_cast<double>(rings.size());
  const double fraction = protocol_bandwidth_fraction(protocol) * cal.tree_efficiency;
  Stage stage;
  stage.protocol = protocol;
  int longest_chain = 1, nodes = 1;
  for (const auto& ring : rings) {
    std::vector<std::vector<int>> chains;  // one per node, in the ring's node order
    for (int g : ring) {
      if (chains.empty() || spec.node_of(chains.back().front()) != spec.node_of(g)) chains.push_back({});
      chains.back().push_back(g);
    }
    nodes = static_cast<int>(chains.size());
    const int head_local = spec.local_of(chains.front().back());
    for (std::size_t c = 0; c < chains.size(); ++c) {
      auto& chain = chains[c];
      if (spec.local_of(chain.back()) != head_local && spec.local_of(chain.front()) == head_local)
        std::reverse(chain.begin(), chain.end());  // the ring runs every other node backwards
      longest_chain = std::max(longest_chain, static_cast<int>(chain.size()));
      for (std::size_t i = 0; i + 1 < chain.size(); ++i) {
        stage.transfers.push_back({chain[i], chain[i + 1], share, share, fraction});  // reduce up
        stage.transfers.push_back({chain[i + 1], chain[i], share, share, fraction});  // broadcast down
      }
      if (c == 0) continue;
      const int head = chain.back(), parent = chains[(c - 1) / 2].back();
      stage.transfers.push_back({head, parent, share, share, fraction});
      stage.transfers.push_back({parent, head, share, share, fraction});
    }
  }
  const int depth = static_cast<int>(std::floor(std::log2(static_cast<double>(nodes))));
  stage.latency_steps = 2 * (longest_chain - 1);
  stage.net_latency_steps = 2 * depth;
  return {stage};
}

}  // namespace moesys::sim
