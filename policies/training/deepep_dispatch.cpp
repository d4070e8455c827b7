// The DeepEP dispatcher (policy.hpp, Dispatcher::deepep): the all-to-all dispatcher's rows, moved with
// core::CollectiveAlgo::deepep, which needs to know how many of this rank's tokens reach each node, each counted
// once however many of the node's experts take it (that is what crosses the network).
//
// The rows per peer say how many (token, expert) copies go to each node, not how they group into tokens, so the
// count is estimated: a token that reaches a node brings it k / D of its k copies on average, where D is the
// number of distinct nodes a token's experts span when every expert is as likely, under the model's gate rule.
// Without a group limit that is a closed form (a uniform k-subset of the experts); with one, the gate picks the
// groups whose two best scores sum highest (as the gate kernel does), which favours groups holding several good
// experts and spreads a token over more of its groups than a uniform subset would (DeepSeek-V3 over 8 nodes: 3.95
// nodes per token against 3.60), so D is sampled once per layout from a fixed seed. Exact for uniform routing;
// skewed rows keep the same copies per reached node. Real runtimes move the rows directly and ignore the estimate.
// Inside the node the rows still travel once per (token, expert), where DeepEP sends a token once per rank.
// Experts are placed as the gate lays them out, expert e on member e / (experts per member); replicas are refused.
#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <tuple>

#include "core/routing_odds.hpp"
#include "policies/training/rank_trainer.hpp"

namespace moesys::policies::training {

namespace {

// Distinct nodes among a token's k experts; node_of[e] is expert e's node (slot in the group's node order).
double nodes_per_token(int k, int groups, int max_groups, const std::vector<int>& node_of) {
  const int experts = static_cast<int>(node_of.size());
  const int nodes = *std::max_element(node_of.begin(), node_of.end()) + 1;
  if (max_groups <= 0 || max_groups >= groups) {
    double d = 0;
    for (int b = 0; b < nodes; ++b) {
      const auto held = static_cast<int>(std::count(node_of.begin(), node_of.end(), b));
      d += 1 - core::chance_to_miss_all(experts, held, k);
    }
    return d;
  }
  // One process simulates every rank (SimGrid runs one actor at a time; a real rank is a process of its own, and
  // only its host thread runs the program): sample each layout once.
  static std::map<std::tuple<int, int, int, std::vector<int>>, double> cache;
  const auto key = std::make_tuple(k, groups, max_groups, node_of);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  constexpr int kTokens = 1 << 12;
  std::mt19937_64 bits(20241226);
  const int per_group = experts / groups;
  std::vector<double> score(static_cast<std::size_t>(experts)), group_score(static_cast<std::size_t>(groups));
  std::vector<int> order(static_cast<std::size_t>(groups)), pick, seen;
  long long distinct = 0;
  for (int t = 0; t < kTokens; ++t) {
    for (double& x : score) x = static_cast<double>(bits() >> 11);
    for (int g = 0; g < groups; ++g) {
      auto first = score.begin() + g * per_group;
      std::vector<double> best(first, first + per_group);
      std::partial_sort(best.begin(), best.begin() + std::min(2, per_group), best.end(), std::greater<>());
      group_score[std::size_t(g)] = best[0] + (per_group > 1 ? best[1] : 0);
    }
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + max_groups, order.end(), [&](int a, int b) {
      return group_score[std::size_t(a)] > group_score[std::size_t(b)] ||
             (group_score[std::size_t(a)] == group_score[std::size_t(b)] && a < b);
    });
    pick.clear();
    for (int i = 0; i < max_groups; ++i)
      for (int e = order[std::size_t(i)] * per_group; e < (order[std::size_t(i)] + 1) * per_group; ++e) pick.push_back(e);
    std::partial_sort(pick.begin(), pick.begin() + k, pick.end(),
                      [&](int a, int b) { return score[std::size_t(a)] > score[std::size_t(b)]; });
    seen.clear();
    for (int i = 0; i < k; ++i) seen.push_back(node_of[std::size_t(pick[std::size_t(i)])]);
    std::sort(seen.begin(), seen.end());
    distinct += std::unique(seen.begin(), seen.end()) - seen.begin();
  }
  return cache[key] = static_cast<double>(distinct) / kTokens;
}

}  // namespace

core::NodeTraffic RankTrainer::deepep_node_traffic(const std::vector<std::uint64_t>& send, double row_bytes,
                                                   int chunks, bool combine) const {
  const core::ClusterSpec& spec = rt_.cluster();
  const auto& members = ep_group_.ranks();
  std::vector<int> nodes;  // the group's nodes, ascending (NodeTraffic's order)
  for (int m : members) nodes.push_back(spec.node_of(m));
  std::sort(nodes.begin(), nodes.end());
  nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
  core::NodeTraffic traffic;
  traffic.combine = combine;
  if (nodes.size() == 1) {  // nothing crosses the network; the plan ignores a member's own node
    traffic.bytes.push_back(0);
    return traffic;
  }
  auto slot_of = [&](int member) {
    return static_cast<int>(std::lower_bound(nodes.begin(), nodes.end(), spec.node_of(member)) - nodes.begin());
  };
  // Expert e lives on member e / (experts per member), as the gate's experts are laid out.
  const int experts = model_.experts, per_member = std::max(1, experts / static_cast<int>(members.size()));
  std::vector<int> node_of(static_cast<std::size_t>(experts));
  for (int e = 0; e < experts; ++e)
    node_of[std::size_t(e)] = slot_of(members[std::min<std::size_t>(std::size_t(e / per_member), members.size() - 1)]);
  const int k = model_.top_k;
  const double copies_per_node = k / nodes_per_token(k, model_.expert_groups, model_.max_groups_per_token, node_of);
  std::vector<double> rows(nodes.size(), 0.0);
  for (std::size_t p = 0; p < members.size(); ++p)
    rows[std::size_t(slot_of(members[p]))] += static_cast<double>(send[p]) / row_bytes;
  const double tokens = static_cast<double>(tokens_) / std::max(1, chunks);
  for (double r : rows)
    traffic.bytes.push_back(static_cast<std::uint64_t>(std::llround(std::min(tokens, r / copies_per_node) * row_bytes)));
  return traffic;
}

}  // namespace moesys::policies::training
