// Ring all-reduce, reduce-scatter and all-gather with NCCL's multi-ring layout: one ring per NIC ("channel"),
// each carrying an equal share of the data. A ring visits the members of a node in turn and crosses to the next
// node from and to the GPU served by its own NIC, alternating direction on every other node, so each channel
// stays on its rail as NCCL's topology search arranges on rail-wired clusters.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <stdexcept>

#include "sim/collectives.hpp"

namespace moesys::sim {

std::vector<std::vector<int>> ring_orders(const core::ClusterSpec& spec, const std::vector<int>& members) {
  std::map<int, std::vector<int>> by_node;  // node -> sorted member locals
  for (int g : members) by_node[spec.node_of(g)].push_back(spec.local_of(g));
  for (auto& [n, locals] : by_node) std::sort(locals.begin(), locals.end());
  const auto& first_locals = by_node.begin()->second;
  bool uniform = std::all_of(by_node.begin(), by_node.end(), [&](const auto& kv) { return kv.second == first_locals; });
  if (by_node.size() == 1 || !uniform) {
    // One node (all channels share the same NVLink ports) or an irregular group: a single ring in member order.
    std::vector<int> order = members;
    std::sort(order.begin(), order.end());
    return {order};
  }
  // One channel per distinct NIC among a node's members, anchored at the first member that NIC serves.
  std::vector<int> anchors;
  std::set<int> nics_seen;
  for (int l : first_locals)
    if (nics_seen.insert(spec.node.nic_of_gpu(l)).second) anchors.push_back(l);
  const int m = static_cast<int>(first_locals.size());
  std::vector<std::vector<int>> rings;
  for (int anchor : anchors) {
    int p = static_cast<int>(std::find(first_locals.begin(), first_locals.end(), anchor) - first_locals.begin());
    std::vector<int> forward;  // ends at the anchor
    for (int i = 1; i <= m; ++i) forward.push_back(first_locals[static_cast<std::size_t>((p + i) % m)]);
    std::vector<int> ring;
    int k = 0;
    for (const auto& [node, locals] : by_node) {
      (void)locals;
      if (k % 2 == 0)
        for (int l : forward) ring.push_back(node * spec.node.gpus + l);
      else
        for (auto it = forward.rbegin(); it != forward.rend(); ++it) ring.push_back(node * spec.node.gpus + *it);
      ++k;
    }
    rings.push_back(std::move(ring));
  }
  return rings;
}

CollectivePlan plan_ring(const core::ClusterSpec& spec, const CollectiveCall& call, Protocol protocol) {
  const int n = static_cast<int>(call.members.size());
  if (n <= 1 || call.bytes <= 0) return {};
  int steps = 0;
  switch (call.op) {
    case CollectiveOp::all_reduce:
      steps = 2 * (n - 1);
      break;
    case CollectiveOp::reduce_scatter:
    case CollectiveOp::all_gather:
      steps = n - 1;
      break;
    case CollectiveOp::all_to_all:
      throw std::invalid_argument("ring does not implement all-to-all");
  }
  const double chunk = call.bytes / n;
  auto rings = ring_orders(spec, call.members);
  const double per_channel = chunk / static_cast<double>(rings.size());
  Stage stage;
  stage.protocol = protocol;
  // A step ends when its slowest edge has delivered; data passes the ring's `nodes` network edges and n - nodes
  // NVLink edges in turn, so that share of the steps pays the network's latency (NCCL's ring latency model).
  const int nodes = nodes_spanned(spec, call.members);
  stage.net_latency_steps = nodes > 1 ? static_cast<int>(std::lround(static_cast<double>(steps) * nodes / n)) : 0;
  stage.latency_steps = steps - stage.net_latency_steps;
  const double fraction = protocol_bandwidth_fraction(protocol);
  for (const auto& ring : rings)
    for (std::size_t i = 0; i < ring.size(); ++i)
      stage.transfers.push_back({ring[i], ring[(i + 1) % ring.size()], per_channel * steps, chunk, fraction});
  return single_stage(std::move(stage));
}

}  // namespace moesys::sim
