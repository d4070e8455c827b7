// Resource-aware (hierarchical) all-to-all of the MoESys paper: first inside each node over NVLink, moving every
// byte to the local GPU whose index matches its destination's; then among GPUs of the same local index across
// nodes, i.e. along one rail. Every member's steps are the real runtimes' (core/hierarchical_all_to_all.hpp); the
// plan's two stages are what all members move in each.
#include <algorithm>
#include <map>
#include <stdexcept>
#include <vector>

#include "core/hierarchical_all_to_all.hpp"
#include "sim/collectives.hpp"

namespace moesys::sim {

CollectivePlan plan_hierarchical_all_to_all(const core::ClusterSpec& spec, const core::Calibration& cal,
                                            const CollectiveCall& call) {
  const std::size_t n = call.members.size();
  // The group as N nodes of P members, node-major: nodes in order of first appearance, each node's GPUs by local
  // index. Every node must hold the same local GPUs (a relay of one step is the member with the destination's local
  // index on the source's node).
  std::map<int, std::size_t> node_index;
  std::vector<std::vector<int>> locals;  // per node, its members' local GPU indices (sorted)
  for (int g : call.members) {
    const auto [it, fresh] = node_index.emplace(spec.node_of(g), locals.size());
    if (fresh) locals.emplace_back();
    locals[it->second].push_back(spec.local_of(g));
  }
  for (auto& l : locals) std::sort(l.begin(), l.end());
  const int N = static_cast<int>(locals.size()), P = static_cast<int>(locals.front().size());
  for (const auto& l : locals)
    if (l != locals.front())
      throw std::invalid_argument("hierarchical all-to-all needs every node of the group to hold the same local GPUs");
  const auto Pz = static_cast<std::size_t>(P), Nz = static_cast<std::size_t>(N);
  // member_at[a * P + l]: the group index of node a's member with local position l.
  std::vector<std::size_t> member_at(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t a = node_index.at(spec.node_of(call.members[i]));
    const auto& l = locals[a];
    const auto pos = std::lower_bound(l.begin(), l.end(), spec.local_of(call.members[i])) - l.begin();
    member_at[a * Pz + static_cast<std::size_t>(pos)] = i;
  }
  auto bytes = [&](std::size_t from, std::size_t to) {  // node-major positions; the diagonal moves nothing
    return from == to ? 0.0 : std::max(0.0, call.matrix[member_at[from]][member_at[to]]);
  };
  // bytes[a * n + b] from member a to member b in each step, from every member's own steps.
  std::vector<double> intra(n * n, 0.0), inter(n * n, 0.0);
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t a = k / Pz, l = k % Pz, self = member_at[k];
    std::vector<double> send(n), recv(n), sizes_in(n);
    for (std::size_t j = 0; j < n; ++j) send[j] = bytes(k, j), recv[j] = bytes(j, k);
    for (std::size_t lp = 0; lp < Pz; ++lp)  // what local peer lp has for (m, l), every node m
      for (std::size_t m = 0; m < Nz; ++m) sizes_in[lp * Nz + m] = bytes(a * Pz + lp, m * Pz + l);
    const auto steps = core::hierarchical_steps(send, recv, sizes_in, N, P);
    for (const auto& b : steps.intra_send)
      if (const std::size_t to = member_at[a * Pz + static_cast<std::size_t>(b.peer)]; to != self)
        intra[self * n + to] += b.bytes;
    for (const auto& b : steps.inter_send)
      if (const std::size_t to = member_at[static_cast<std::size_t>(b.peer) * Pz + l]; to != self)
        inter[self * n + to] += b.bytes;
  }
  CollectivePlan plan;
  for (const auto* step : {&intra, &inter}) {
    Stage stage;
    for (std::size_t a = 0; a < n; ++a)
      for (std::size_t b = 0; b < n; ++b)
        if (const double moved = (*step)[a * n + b]; moved > 0)
          stage.transfers.push_back({call.members[a], call.members[b], moved, moved});
    if (!stage.transfers.empty())
      plan.push_back(all_to_all_stage(spec, cal, std::move(stage)));
  }
  return plan;
}

}  // namespace moesys::sim
