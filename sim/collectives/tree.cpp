// NCCL's tree all-reduce across nodes: inside each node the members form a chain ending at the GPU of the
// channel's NIC; the chain heads of all nodes form two binary trees (NCCL's double binary tree), each reducing and
// broadcasting half of the channel's data. A node that is a leaf of one tree is an inner node of the other, so
// every node's NIC carries about the same bytes, which is why NCCL rates a tree's bus bandwidth close to a ring's.
// Data is reduced up the chains and the trees, then broadcast back down, pipelined in chunks, so every edge carries
// its tree's share once in each direction and all of them run at once. Its latency grows with the chain length and
// the trees' depth instead of the number of ranks, which is why NCCL prefers it for small and medium sizes on many
// nodes.
#include <algorithm>
#include <cmath>
#include <map>

#include "sim/collectives.hpp"

namespace moesys::sim {

namespace {

// Parent of position p (0 < p < n) in a binary tree over positions 0..n-1 rooted at 0: clear p's lowest set bit
// and set the next one up, or only clear it where that passes the end. The odd positions are the leaves.
int tree_parent(int p, int n) {
  const int low = p & -p;
  const int up = (p ^ low) | (low << 1);
  return up < n ? up : p ^ low;
}

// The second tree's position of the node at position p of the first: mirrored for an even count (the first
// tree's leaves, odd positions, become even ones), shifted by one for an odd count.
int second_tree_position(int p, int n) {
  return n % 2 == 0 ? n - 1 - p : (p + 1) % n;
}

}  // namespace

CollectivePlan plan_tree(const core::ClusterSpec& spec, const core::Calibration& cal, const CollectiveCall& call,
                         Protocol protocol) {
  const int n = static_cast<int>(call.members.size());
  if (n <= 1 || call.bytes <= 0) return {};
  // The rings' node segments give each channel's chain per node; every chain is turned to end at the GPU that
  // crosses the network, as the ring's does.
  const auto rings = ring_orders(spec, call.members);
  const double share = call.bytes / static_cast<double>(rings.size());
  const double fraction = protocol_bandwidth_fraction(protocol) * cal.tree_efficiency;
  // With its own ramp (Calibration::tree_half_bandwidth_bytes) a tree's transfers ramp on the call's size, as NCCL's
  // correction of its trees does, instead of on their messages.
  auto transfer = [&](int src, int dst, double bytes) {
    Transfer t{src, dst, bytes, bytes, fraction};
    if (cal.tree_half_bandwidth_bytes > 0) t.message_bytes = call.bytes, t.ramp_half_bytes = cal.tree_half_bandwidth_bytes;
    return t;
  };
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
    for (auto& chain : chains) {
      if (spec.local_of(chain.back()) != head_local && spec.local_of(chain.front()) == head_local)
        std::reverse(chain.begin(), chain.end());  // the ring runs every other node backwards
      longest_chain = std::max(longest_chain, static_cast<int>(chain.size()));
      for (std::size_t i = 0; i + 1 < chain.size(); ++i) {  // both trees' halves pass the chain
        stage.transfers.push_back(transfer(chain[i], chain[i + 1], share));  // reduce up
        stage.transfers.push_back(transfer(chain[i + 1], chain[i], share));  // broadcast down
      }
    }
    // Position -> node for each tree; every non-root position exchanges half the share with its parent.
    std::vector<int> first(static_cast<std::size_t>(nodes)), second(static_cast<std::size_t>(nodes));
    for (int c = 0; c < nodes; ++c) {
      first[static_cast<std::size_t>(c)] = c;
      second[static_cast<std::size_t>(second_tree_position(c, nodes))] = c;
    }
    for (const auto* tree : {&first, &second})
      for (int p = 1; p < nodes; ++p) {
        const int head = chains[static_cast<std::size_t>((*tree)[static_cast<std::size_t>(p)])].back();
        const int parent =
            chains[static_cast<std::size_t>((*tree)[static_cast<std::size_t>(tree_parent(p, nodes))])].back();
        stage.transfers.push_back(transfer(head, parent, share / 2));
        stage.transfers.push_back(transfer(parent, head, share / 2));
      }
  }
  const int depth = static_cast<int>(std::floor(std::log2(static_cast<double>(nodes))));
  stage.latency_steps = 2 * (longest_chain - 1);
  stage.net_latency_steps = 2 * depth;
  return single_stage(std::move(stage));
}

}  // namespace moesys::sim
