// MoE dispatch and combine as DeepEP's kernels move them (github.com/deepseek-ai/DeepEP).
//
// Normal kernels (training, prefill): a token bound for experts on another node crosses the network once for
// that node, whatever the number of the node's GPUs that take it, to the GPU of the sender's local index on it
// (along the rail, GPUDirect RDMA), which forwards it over NVLink to the GPUs that take it. The RDMA chunks and
// the NVLink forwarding are pipelined, so the plan is one stage in which both run at once; tokens for the
// sender's own node go over NVLink directly. Combine is the reverse: a node's contributions to one token are
// summed on the rail GPU and cross the network once.
//
// Low-latency kernels (decoding): every (token, expert) copy is written by the GPU straight into the expert
// rank's buffer (IBGDA; NVLink inside the node), with no per-node deduplication and no host in the loop. All of
// a member's messages are in flight together, so the size ramp sees the member's whole send, peers add no
// latency, and the kernel has a fixed cost of its own (Calibration::ep_ll_latency_s).
//
// Both kernels load and store NVLink traffic from the few SMs they are given, so inside the node they reach
// Calibration::ep_nvlink_efficiency of the NVLink rate, not NCCL's nvlink_efficiency.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "sim/collectives.hpp"

namespace moesys::sim {

namespace {

// The nodes a group spans, ascending (the order of NodeTraffic::bytes).
// DeepEP's NVLink transfers run at ep_nvlink_efficiency of spec where NCCL's run at nvlink_efficiency (the
// links' modelled rate), so at most at the latter.
double nvlink_fraction(const core::Calibration& cal) {
  return cal.nvlink_efficiency > 0 ? std::min(1.0, cal.ep_nvlink_efficiency / cal.nvlink_efficiency) : 1.0;
}

}  // namespace

void append_node_traffic(const core::ClusterSpec& spec, const std::vector<int>& members,
                         const core::NodeTraffic& traffic, std::vector<double>& row) {
  const std::size_t nodes = nodes_of(spec, members).size();
  if (!traffic.bytes.empty() && traffic.bytes.size() != nodes)
    throw std::invalid_argument("all_to_all/deepep: node traffic has " + std::to_string(traffic.bytes.size()) +
                                " entries for a group spanning " + std::to_string(nodes) + " nodes");
  for (std::size_t b = 0; b < nodes; ++b)
    row.push_back(traffic.bytes.empty() ? -1.0 : static_cast<double>(traffic.bytes[b]));
  row.push_back(traffic.combine ? 1.0 : 0.0);
}

namespace {
/// DeepEP's kernels move a node's share over NVLink (IPC buffers between the node's GPUs): no NVLink, no DeepEP.
void require_nvlink(const core::ClusterSpec& spec, const char* algo) {
  if (spec.node.intra_node.kind == core::IntraNodeKind::pcie_only)
    throw std::invalid_argument(std::string("all_to_all/") + algo + " needs NVLink between a node's GPUs; nodes of " +
                                spec.name + " connect their GPUs through PCIe only");
}
}  // namespace

CollectivePlan plan_deepep(const core::ClusterSpec& spec, const core::Calibration& cal, const CollectiveCall& call) {
  const std::size_t n = call.members.size();
  if (n == 0) return {};
  require_nvlink(spec, "deepep");
  const std::vector<int> nodes = nodes_of(spec, call.members);
  const std::size_t row_size = n + nodes.size() + 1;
  const bool combine = call.matrix.front().back() > 0.5;
  for (const auto& row : call.matrix) {
    if (row.size() != row_size) throw std::logic_error("all_to_all/deepep: a member's row lacks its node traffic");
    if ((row.back() > 0.5) != combine)
      throw std::invalid_argument("all_to_all/deepep: members disagree on dispatch or combine");
  }
  std::vector<int> index_of(static_cast<std::size_t>(spec.total_gpus()), -1);
  for (std::size_t i = 0; i < n; ++i) index_of[static_cast<std::size_t>(call.members[i])] = static_cast<int>(i);
  // Every member needs its rail GPU on every node of the group, whatever this call's bytes.
  const std::size_t per_node = n / nodes.size();
  if (per_node * nodes.size() != n)
    throw std::invalid_argument("all_to_all/deepep needs every node of the group to hold the same local GPUs");
  for (std::size_t i = 0; i < n; ++i)
    for (int node : nodes)
      if (index_of[static_cast<std::size_t>(node * spec.node.gpus + spec.local_of(call.members[i]))] < 0)
        throw std::invalid_argument("all_to_all/deepep needs every node of the group to hold the same local GPUs");
  // The rail GPU of member i on node `node`: the member there with i's local index.
  auto rail_of = [&](std::size_t i, int node) {
    const int r = index_of[static_cast<std::size_t>(node * spec.node.gpus + spec.local_of(call.members[i]))];
    if (r < 0) throw std::invalid_argument("all_to_all/deepep needs every node of the group to hold the same local GPUs");
    return static_cast<std::size_t>(r);
  };
  auto node_slot = [&](int node) {
    return static_cast<std::size_t>(std::lower_bound(nodes.begin(), nodes.end(), node) - nodes.begin());
  };
  // Member i's network bytes with node slot s: given, or (no node traffic) the sum over the node's members.
  std::vector<double> derived(n * nodes.size(), 0.0);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      const std::size_t to_node = node_slot(spec.node_of(call.members[j]));
      derived[i * nodes.size() + to_node] += combine ? call.matrix[j][i] : call.matrix[i][j];
    }
  auto network_bytes = [&](std::size_t i, std::size_t slot) {
    const double given = call.matrix[i][n + slot];
    return given >= 0 ? given : derived[i * nodes.size() + slot];
  };
  // Every flow, summed per (from, to) member pair: bytes[from * n + to].
  std::vector<double> bytes(n * n, 0.0);
  for (std::size_t i = 0; i < n; ++i) {  // i: the token's owner (sender in dispatch, receiver in combine)
    const int home = spec.node_of(call.members[i]);
    for (std::size_t j = 0; j < n; ++j) {  // j: a member holding experts of i's tokens
      const double b = combine ? call.matrix[j][i] : call.matrix[i][j];
      if (b <= 0 || i == j) continue;
      const int node = spec.node_of(call.members[j]);
      const std::size_t via = node == home ? i : rail_of(i, node);
      if (via == j) continue;
      bytes[combine ? j * n + via : via * n + j] += b;  // NVLink, inside j's node
    }
    for (int node : nodes)
      if (node != home)
        if (const double b = network_bytes(i, node_slot(node)); b > 0) {
          const std::size_t rail = rail_of(i, node);
          bytes[combine ? rail * n + i : i * n + rail] += b;
        }
  }
  Stage stage;
  const auto messages = std::count_if(bytes.begin(), bytes.end(), [](double b) { return b > 0; });
  stage.transfers.reserve(static_cast<std::size_t>(messages));
  bool network = false;
  for (std::size_t k = 0; k < bytes.size(); ++k) {
    if (bytes[k] <= 0) continue;
    const int from = call.members[k / n], to = call.members[k % n];
    const bool crosses = spec.node_of(from) != spec.node_of(to);
    network = network || crosses;
    stage.transfers.push_back({from, to, bytes[k], bytes[k], crosses ? 1.0 : nvlink_fraction(cal)});
  }
  if (stage.transfers.empty()) return {};
  (network ? stage.net_latency_steps : stage.latency_steps) = 1;
  return single_stage(std::move(stage));
}

CollectivePlan plan_deepep_low_latency(const core::ClusterSpec& spec, const core::Calibration& cal,
                                       const CollectiveCall& call) {
  const std::size_t n = call.members.size();
  if (n > 0) require_nvlink(spec, "deepep-ll");
  Stage stage;
  std::size_t messages = 0;
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j) messages += i != j && call.matrix[i][j] > 0;
  stage.transfers.reserve(messages);
  bool network = false;
  for (std::size_t i = 0; i < n; ++i) {
    double sent = 0;
    for (std::size_t j = 0; j < n; ++j)
      if (j != i) sent += call.matrix[i][j];
    for (std::size_t j = 0; j < n; ++j) {
      const double b = call.matrix[i][j];
      if (b <= 0 || i == j) continue;
      const bool crosses = spec.node_of(call.members[i]) != spec.node_of(call.members[j]);
      network = network || crosses;
      stage.transfers.push_back({call.members[i], call.members[j], b, sent, crosses ? 1.0 : nvlink_fraction(cal)});
    }
  }
  if (stage.transfers.empty()) return {};
  (network ? stage.net_latency_steps : stage.latency_steps) = 1;
  stage.fixed_latency_s = cal.ep_ll_latency_s;
  return single_stage(std::move(stage));
}

}  // namespace moesys::sim
