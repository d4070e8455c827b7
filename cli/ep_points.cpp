#include "cli/ep_points.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <numeric>
#include <random>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <tuple>
#include <utility>

#include "core/routing_odds.hpp"

namespace moesys::cli {

namespace {

int groups_of(const EpSetting& s) { return s.topk_groups > 0 ? std::min(s.topk_groups, s.nodes) : s.nodes; }

// Experts a token chooses from: those of its `groups` nodes.
int pool_of(const EpSetting& s) { return groups_of(s) * (s.experts / s.nodes); }

}  // namespace

EpSetting parse_ep_setting(const nlohmann::json& size, const nlohmann::json& software, bool combine, int nodes,
                           int gpus_per_node) {
  EpSetting s;
  s.combine = combine;
  s.nodes = nodes;
  if (!size.is_object()) throw std::invalid_argument("size: expected an object");
  const std::string kernels =
      software.is_object() && software.contains("ep_kernels") && software["ep_kernels"].is_string()
          ? software["ep_kernels"].get<std::string>()
          : std::string();
  if (kernels != "normal" && kernels != "low_latency")
    throw std::invalid_argument("software.ep_kernels: expected \"normal\" or \"low_latency\"");
  s.low_latency = kernels == "low_latency";
  auto positive = [&](const char* key, bool required, long long fallback) -> long long {
    if (!size.contains(key)) {
      if (required) throw std::invalid_argument(std::string("size.") + key + ": expected a positive integer");
      return fallback;
    }
    if (!size[key].is_number_integer() || size[key].get<long long>() < 1)
      throw std::invalid_argument(std::string("size.") + key + ": expected a positive integer");
    return size[key].get<long long>();
  };
  s.tokens = positive("tokens_per_batch", true, 0);
  s.hidden = positive("hidden", true, 0);
  s.topk = static_cast<int>(positive("topk_experts", true, 0));
  s.ranks = static_cast<int>(positive("ep_ranks", true, 0));
  s.experts = static_cast<int>(positive("num_experts", false, 256));
  s.topk_groups = static_cast<int>(positive("topk_groups", false, 0));
  s.dispatch_dtype = size.contains("dispatch_dtype") && size["dispatch_dtype"].is_string()
                         ? size["dispatch_dtype"].get<std::string>()
                         : (size.contains("dispatch_dtype") ? std::string("?") : std::string("fp8"));
  if (s.dispatch_dtype != "fp8" && s.dispatch_dtype != "bf16")
    throw std::invalid_argument("size.dispatch_dtype: expected \"fp8\" or \"bf16\"");
  if (s.ranks != nodes * gpus_per_node)
    throw std::invalid_argument("size.ep_ranks: expected the point's GPUs (" + std::to_string(nodes * gpus_per_node) +
                                "), got " + std::to_string(s.ranks));
  if (s.experts % s.ranks != 0)
    throw std::invalid_argument("size.num_experts: expected a multiple of ep_ranks");
  if (s.topk > pool_of(s)) throw std::invalid_argument("size.topk_experts: more than the experts a token can reach");
  ep_routing_probabilities(s);
  return s;
}

double ep_token_bytes(const EpSetting& s) {
  const double h = static_cast<double>(s.hidden);
  if (s.combine || s.dispatch_dtype == "bf16") return 2 * h;
  return h + h / 128 * 4 + (s.low_latency ? 16 : 0);
}

void ep_routing_probabilities(EpSetting& s) {
  const int groups = groups_of(s), pool = pool_of(s);
  if (groups >= s.nodes) {
    s.node_probability = 1 - core::chance_to_miss_all(pool, s.experts / s.nodes, s.topk);
    s.rank_probability = 1 - core::chance_to_miss_all(pool, s.experts / s.ranks, s.topk);
    return;
  }
  // The chances depend on the routing shape alone (not on tokens or hidden size), and a calibration file holds many
  // points of each shape: sample each shape once.
  using Shape = std::tuple<int, int, int, int, int>;
  static std::mutex sampled_mutex;
  static std::map<Shape, std::pair<double, double>> sampled;
  const Shape shape{s.experts, s.nodes, s.ranks, s.topk, groups};
  const std::lock_guard<std::mutex> lock(sampled_mutex);
  if (const auto it = sampled.find(shape); it != sampled.end()) {
    std::tie(s.node_probability, s.rank_probability) = it->second;
    return;
  }
  // DeepEP's tests/test_internode.py: scores i.i.d. per (token, expert); the `groups` nodes whose best score is
  // highest; the top-k scores among those nodes' experts. Only the order of the scores matters, so uniform ones
  // from a 64-bit generator serve (fixed seed: the same chances on every machine).
  constexpr int kTokens = 1 << 15;
  std::mt19937_64 bits(20250224);
  const int per_node = s.experts / s.nodes, per_rank = s.experts / s.ranks;
  std::vector<double> score(static_cast<std::size_t>(s.experts));
  std::vector<int> order(static_cast<std::size_t>(s.nodes)), pick;
  long long node_hits = 0, rank_hits = 0;
  for (int t = 0; t < kTokens; ++t) {
    for (double& x : score) x = static_cast<double>(bits() >> 11);
    std::vector<double> best(static_cast<std::size_t>(s.nodes), -1);
    for (int e = 0; e < s.experts; ++e) best[std::size_t(e / per_node)] = std::max(best[std::size_t(e / per_node)], score[std::size_t(e)]);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + groups, order.end(),
                      [&](int a, int b) { return best[std::size_t(a)] > best[std::size_t(b)]; });
    pick.clear();
    for (int g = 0; g < groups; ++g)
      for (int e = order[std::size_t(g)] * per_node; e < (order[std::size_t(g)] + 1) * per_node; ++e) pick.push_back(e);
    std::partial_sort(pick.begin(), pick.begin() + s.topk, pick.end(),
                      [&](int a, int b) { return score[std::size_t(a)] > score[std::size_t(b)]; });
    std::vector<int> nodes, ranks;
    for (int i = 0; i < s.topk; ++i) {
      nodes.push_back(pick[std::size_t(i)] / per_node);
      ranks.push_back(pick[std::size_t(i)] / per_rank);
    }
    std::sort(nodes.begin(), nodes.end());
    std::sort(ranks.begin(), ranks.end());
    node_hits += std::unique(nodes.begin(), nodes.end()) - nodes.begin();
    rank_hits += std::unique(ranks.begin(), ranks.end()) - ranks.begin();
  }
  // Every node (rank) is alike: each receives its share of the tokens' distinct nodes (ranks).
  s.node_probability = static_cast<double>(node_hits) / kTokens / s.nodes;
  s.rank_probability = static_cast<double>(rank_hits) / kTokens / s.ranks;
  sampled[shape] = {s.node_probability, s.rank_probability};
}

EpTraffic ep_traffic(const EpSetting& s) {
  EpTraffic t;
  const double token = ep_token_bytes(s);
  const double tokens = static_cast<double>(s.tokens);
  if (s.low_latency) {
    // Every (token, expert) copy, to the expert's rank; experts are spread evenly over the ranks.
    t.algo = core::CollectiveAlgo::deepep_ll;
    t.to_rank.assign(static_cast<std::size_t>(s.ranks), std::llround(tokens * s.topk / s.ranks * token));
    return t;
  }
  t.to_rank.assign(static_cast<std::size_t>(s.ranks), std::llround(tokens * s.rank_probability * token));
  t.to_node.bytes.assign(static_cast<std::size_t>(s.nodes), std::llround(tokens * s.node_probability * token));
  t.to_node.combine = s.combine;
  return t;
}

double ep_metric(const EpSetting& s, const std::string& metric, double seconds) {
  if (metric == "latency") return seconds * 1e6;
  if (!(seconds > 0)) return 0;
  const double token = ep_token_bytes(s);
  const double tokens = static_cast<double>(s.tokens);
  // Normal kernels print the RDMA side ((token, node) pairs, the own node included) and the NVLink side (rows the
  // rank receives, its own included); their "bottleneck" figure is the RDMA one across nodes.
  const bool rdma = metric == "rdma_bandwidth" || (metric != "nvl_bandwidth" && s.nodes > 1);
  double bytes = 0;
  if (s.low_latency)
    bytes = tokens * s.topk * token;
  else if (rdma)
    bytes = tokens * s.nodes * s.node_probability * token;
  else
    bytes = tokens * s.ranks * s.rank_probability * token;
  return bytes / seconds / 1e9;
}

}  // namespace moesys::cli
