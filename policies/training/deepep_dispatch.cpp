// The DeepEP dispatcher (policy.hpp, Dispatcher::deepep): the all-to-all dispatcher's rows, moved with
// core::CollectiveAlgo::deepep, which needs to know how many of this rank's tokens reach each node, each counted
// once however many of the node's experts take it (that is what crosses the network).
//
// The rows per peer say how many (token, expert) copies go to each node, not how they group into tokens, so the
// count is estimated: a token of k copies reaches at most M nodes (the model's node limit: groups of experts a
// token may use, DeepSeek-V3's 4 of 8; else every node), node b with probability s_b = min(1, M q_b), where q_b is
// the share of the rank's copies that go to b, and given that, holds its expected k q_b / s_b copies there as k
// draws; so it reaches b with probability s_b (1 - (1 - q_b / s_b)^k). Uniform routing over N nodes gives DeepEP's
// own expectation (M/N)(1 - (1 - 1/M)^k), drawn with replacement. Real runtimes move the rows directly and ignore
// the estimate.
#include <algorithm>
#include <cmath>
#include <map>

#include "policies/training/rank_trainer.hpp"

namespace moesys::policies::training {

core::NodeTraffic RankTrainer::deepep_node_traffic(const std::vector<std::uint64_t>& send, double row_bytes,
                                                   int chunks, bool combine) const {
  const core::ClusterSpec& spec = rt_.cluster();
  std::map<int, double> copies;  // node -> rows this rank sends there (ascending nodes)
  const auto& members = ep_group_.ranks();
  for (std::size_t p = 0; p < members.size(); ++p)
    copies[spec.node_of(members[p])] += static_cast<double>(send[p]) / row_bytes;
  const int nodes = static_cast<int>(copies.size()), k = model_.top_k;
  // Nodes a token may reach: the groups it may use, each spanning ceil(nodes / groups) of the group's nodes.
  int limit = std::min(nodes, k);
  if (model_.max_groups_per_token > 0 && model_.expert_groups > 0)
    limit = std::min(limit, model_.max_groups_per_token *
                                std::max(1, (nodes + model_.expert_groups - 1) / model_.expert_groups));
  const double tokens = static_cast<double>(tokens_) / std::max(1, chunks);
  core::NodeTraffic traffic;
  traffic.combine = combine;
  for (const auto& [node, rows] : copies) {
    double reached = 0;
    if (rows > 0 && tokens > 0) {
      const double q = std::min(1.0, rows / (tokens * k));
      const double s = std::min(1.0, limit * q);
      reached = std::min(rows, tokens * s * (1 - std::pow(1 - q / s, k)));
    }
    traffic.bytes.push_back(static_cast<std::uint64_t>(std::llround(reached * row_bytes)));
  }
  return traffic;
}

}  // namespace moesys::policies::training
