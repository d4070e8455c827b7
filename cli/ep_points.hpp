#pragma once
// Published MoE dispatch/combine measurements (DeepEP's tests, calibration/*-measured.json categories ep_dispatch
// and ep_combine) and the traffic they imply. DeepEP's tests score every (token, expert) at random and take the
// top-k experts, among the `topk_groups` nodes whose best expert scores highest when the node limit is on: the
// chance that a rank or node receives a token is a closed form without the limit and is sampled with it
// (ep_routing_probabilities). The simulator runs the all-to-all with the expected bytes, and the time is turned
// into the metric exactly as the test prints it.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/runtime.hpp"

namespace moesys::cli {

struct EpSetting {
  bool low_latency = false;  // software.ep_kernels "low_latency" (else "normal")
  bool combine = false;      // category ep_combine
  long long tokens = 0;      // per rank
  long long hidden = 0;
  int topk = 0;
  int topk_groups = 0;  // nodes a token may reach; 0: no limit
  int experts = 256;
  int ranks = 0;
  int nodes = 1;
  std::string dispatch_dtype = "fp8";
  /// Chance that a given node (rank) receives a given token at least once, from ep_routing_probabilities.
  double node_probability = 0;
  double rank_probability = 0;
};

/// Reads a point's EP setting; throws std::invalid_argument naming the field that is missing or wrong.
EpSetting parse_ep_setting(const nlohmann::json& size, const nlohmann::json& software, bool combine, int nodes,
                           int gpus_per_node);

/// Bytes one token carries in the operation: DeepEP's fp8 (values plus one fp32 scale per 128, and a 16-byte
/// header in the low-latency layout) or bf16; combine is bf16.
double ep_token_bytes(const EpSetting& s);
/// Sets node_probability and rank_probability. Without a node limit a token's experts are a uniform k-subset
/// and the chances are closed forms. With one, DeepEP's test picks the nodes whose best expert scores highest,
/// which favours nodes that also hold the next best ones (at 8 nodes, 4 per token, top-8: 3.98 nodes per token,
/// where a uniform k-subset of the 4 nodes' experts gives 3.63), so the routing is sampled as the test does it,
/// from a fixed seed (2^15 tokens: the chances to about 0.3%).
void ep_routing_probabilities(EpSetting& s);

/// One rank's all-to-all for the setting: bytes to every rank and, for normal kernels, to every node.
struct EpTraffic {
  std::vector<std::uint64_t> to_rank;
  core::NodeTraffic to_node;
  core::CollectiveAlgo algo = core::CollectiveAlgo::deepep;
};
EpTraffic ep_traffic(const EpSetting& s);

/// The measured metric from a simulated time: "latency" in us; the bandwidths as DeepEP's tests print them
/// (normal kernels: bytes over RDMA counting the token's own node too, or received over NVLink on one node; low
/// latency: every (token, expert) copy).
double ep_metric(const EpSetting& s, const std::string& metric, double seconds);

}  // namespace moesys::cli
