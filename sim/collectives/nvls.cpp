// NVLink SHARP (NVLS) all-reduce: on NVSwitch gen3 (Hopper nodes) the switch reduces the buffers of all GPUs as
// they read it (multimem load-reduce) and multicasts the result as they store it, so each GPU sends and receives
// the buffer once instead of a ring's 2(n-1)/n times, at the rate the switch reduces (Calibration::nvls_efficiency
// of the port). The call has a fixed setup cost (nvls_latency_s) that makes NCCL use it only for larger sizes.
//
// NVLS-tree, across nodes: NVLS inside each node leaves every GPU the node's sum of its 1/g slice; each GPU then
// all-reduces its slice with the same GPU of the other nodes over a tree along its own rail, and NVLS multicasts
// the result back. Both parts pipeline, so their transfers run at once.
#include <algorithm>
#include <cmath>
#include <map>

#include "sim/collectives.hpp"

namespace moesys::sim {

CollectivePlan plan_nvls(const core::ClusterSpec& spec, const core::Calibration& cal, const CollectiveCall& call,
                         bool across_nodes) {
  const int n = static_cast<int>(call.members.size());
  if (n <= 1 || call.bytes <= 0) return {};
  std::map<int, std::vector<int>> by_node;  // node -> member GPUs
  for (int g : call.members) by_node[spec.node_of(g)].push_back(g);
  Stage stage;
  stage.fixed_latency_s = cal.nvls_latency_s;
  // Across nodes NVLS runs as a reduce-scatter (send the buffer, receive a 1/g slice) and, after the network, an
  // all-gather (send the slice, receive the buffer): each port carries a slice more than in one node.
  const bool tree = across_nodes && by_node.size() > 1;
  const double per_gpu = call.bytes * (tree ? 1 + 1.0 / static_cast<double>(by_node.begin()->second.size()) : 1);
  // The switch is not a host of the platform; a GPU's send to the switch and its receive from it load its port
  // exactly as a send to one neighbour and a receive from the other do.
  for (auto& [node, gpus] : by_node) {
    std::sort(gpus.begin(), gpus.end());
    if (gpus.size() < 2) continue;
    for (std::size_t i = 0; i < gpus.size(); ++i)
      stage.transfers.push_back({gpus[i], gpus[(i + 1) % gpus.size()], per_gpu, call.bytes, cal.nvls_efficiency});
  }
  if (tree) {
    std::vector<std::vector<int>> nodes;
    for (auto& [node, gpus] : by_node) nodes.push_back(gpus);
    const std::size_t per_node = nodes.front().size();
    const double slice = call.bytes / static_cast<double>(per_node);
    for (std::size_t c = 1; c < nodes.size(); ++c)
      for (std::size_t l = 0; l < std::min(per_node, nodes[c].size()); ++l) {
        const int child = nodes[c][l], parent = nodes[(c - 1) / 2][l];
        stage.transfers.push_back({child, parent, slice, slice});
        stage.transfers.push_back({parent, child, slice, slice});
      }
    stage.net_latency_steps = 2 * static_cast<int>(std::floor(std::log2(static_cast<double>(nodes.size()))));
  }
  return single_stage(std::move(stage));
}

}  // namespace moesys::sim
