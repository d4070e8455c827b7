// DeepEP's test routing (cli/ep_points.cpp): the chances that a rank or node receives a token, against the closed
// form of a uniform k-subset and against an independent sampling of tests/test_internode.py's routing (numpy,
// 20,000 tokens: 3.9846 nodes and 7.4767 ranks per token on 8 nodes of 8 with 256 experts, top-8 in 4 nodes).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cli/ep_points.hpp"

using namespace moesys;

namespace {

cli::EpSetting setting(int nodes, int topk_groups) {
  const nlohmann::json size = {{"tokens_per_batch", 4096}, {"hidden", 7168},    {"topk_experts", 8},
                               {"ep_ranks", nodes * 8},    {"num_experts", 256}, {"topk_groups", topk_groups}};
  return cli::parse_ep_setting(size, {{"ep_kernels", "normal"}}, false, nodes, 8);
}

}  // namespace

TEST(EpPoints, WithoutANodeLimitTheChancesAreThoseOfAUniformSubset) {
  // One node: rank r holds 32 of the 256 experts; the token misses all of them with C(224, 8) / C(256, 8).
  const cli::EpSetting s = setting(1, 4);
  double miss = 1;
  for (int i = 0; i < 8; ++i) miss *= (224.0 - i) / (256.0 - i);
  EXPECT_NEAR(s.rank_probability, 1 - miss, 1e-12);
  EXPECT_DOUBLE_EQ(s.node_probability, 1.0);
}

TEST(EpPoints, NodeLimitedRoutingIsSampledAsDeepEpsTestRoutesIt) {
  const cli::EpSetting s = setting(8, 4);
  EXPECT_NEAR(s.node_probability * 8, 3.9846, 0.01 * 3.9846);
  EXPECT_NEAR(s.rank_probability * 64, 7.4767, 0.01 * 7.4767);
  // A uniform 8-subset of the 4 chosen nodes' experts would give 3.63 nodes: the sampled routing is not that.
  EXPECT_GT(s.node_probability * 8, 3.9);
}

TEST(EpPoints, BandwidthsAreCountedAsDeepEpPrintsThem) {
  // Normal kernels across nodes: (token, node) pairs including the own node, fp8 rows of hidden + hidden / 32.
  const cli::EpSetting s = setting(2, 4);
  const double bytes = 4096 * 2 * s.node_probability * (7168 + 7168 / 128.0 * 4);
  EXPECT_NEAR(cli::ep_metric(s, "bottleneck_bandwidth", 1e-3), bytes / 1e-3 / 1e9, 1e-9);
  EXPECT_NEAR(cli::ep_metric(s, "latency", 250e-6), 250, 1e-9);
}
