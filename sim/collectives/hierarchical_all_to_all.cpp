// Resource-aware (hierarchical) all-to-all of the MoESys paper: first inside each node over NVLink, moving every
// byte to the member of its node whose position matches its destination's; then among members of the same position
// across nodes, i.e. along one rail. Every member's steps are the real runtimes' (core/hierarchical_all_to_all.hpp);
// the CUDA runtime runs the first step on a communicator of the node's members, so its messages move on the
// point-to-point channels NCCL gives such a communicator (p2p_channels.cpp), and the second on one of a rail's;
// the plan's two stages are what all members move in each. A group that is not equal node blocks in node order has
// no such steps: it runs the direct all-to-all, as on the real runtimes.
#include <algorithm>
#include <vector>

#include "core/hierarchical_all_to_all.hpp"
#include "sim/collectives.hpp"

namespace moesys::sim {

CollectivePlan plan_hierarchical_all_to_all(const core::ClusterSpec& spec, const core::Calibration& cal,
                                            const CollectiveCall& call) {
  const std::size_t n = call.members.size();
  std::vector<int> member_nodes;
  for (int g : call.members) member_nodes.push_back(spec.node_of(g));
  const int P = core::hierarchical_per_node(member_nodes);
  if (P == 0) return plan_direct_all_to_all(spec, cal, call);
  const int N = static_cast<int>(n) / P;
  const auto Pz = static_cast<std::size_t>(P), Nz = static_cast<std::size_t>(N);
  auto bytes = [&](std::size_t from, std::size_t to) {  // the diagonal moves nothing
    return from == to ? 0.0 : std::max(0.0, call.matrix[from][to]);
  };
  // bytes[a * n + b] from member a to member b in each step, from every member's own steps.
  std::vector<double> intra(n * n, 0.0), inter(n * n, 0.0);
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t a = k / Pz, l = k % Pz;
    std::vector<double> send(n), recv(n), sizes_in(n);
    for (std::size_t j = 0; j < n; ++j) send[j] = bytes(k, j), recv[j] = bytes(j, k);
    for (std::size_t lp = 0; lp < Pz; ++lp)  // what local peer lp has for (m, l), every node m
      for (std::size_t m = 0; m < Nz; ++m) sizes_in[lp * Nz + m] = bytes(a * Pz + lp, m * Pz + l);
    const auto steps = core::hierarchical_steps(send, recv, sizes_in, N, P);
    for (const auto& b : steps.intra_send)
      if (const std::size_t to = a * Pz + static_cast<std::size_t>(b.peer); to != k) intra[k * n + to] += b.bytes;
    for (const auto& b : steps.inter_send)
      if (const std::size_t to = static_cast<std::size_t>(b.peer) * Pz + l; to != k) inter[k * n + to] += b.bytes;
  }
  // The node's communicator: P ranks on one node. The rail's crosses nodes only, where no channel bound applies
  // (Transfer::rate_cap bounds messages inside a node).
  const P2pChannelRule node_rule = p2p_channel_rule(spec, P, 1);
  CollectivePlan plan;
  for (const auto* step : {&intra, &inter}) {
    Stage stage;
    for (std::size_t a = 0; a < n; ++a)
      for (std::size_t b = 0; b < n; ++b)
        if (const double moved = (*step)[a * n + b]; moved > 0) {
          Transfer t{call.members[a], call.members[b], moved, moved};
          // A pair's bytes are N messages, one per destination node, sent in turn on the channels each one earns.
          if (step == &intra) t.rate_cap = node_rule.channels(moved / N) * cal.p2p_channel_bytes_per_s;
          stage.transfers.push_back(t);
        }
    if (!stage.transfers.empty())
      plan.push_back(all_to_all_stage(spec, cal, std::move(stage)));
  }
  return plan;
}

}  // namespace moesys::sim
