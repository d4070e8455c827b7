// A measured machine of CPU ranks in the cluster description: kernel rates by class and shared compute slots
// (parsing, round trip, bad input), and the kernel classes themselves.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/cluster.hpp"
#include "core/error.hpp"
#include "core/kernel_class.hpp"

namespace moesys::core {
namespace {

using nlohmann::json;

json a100() {
  std::ifstream in(std::string(MOESYS_SOURCE_DIR) + "/topologies/dgx-a100-80g.json");
  return json::parse(in);
}

std::string error_of(const json& j) {
  try {
    parse_cluster(j, "m.json");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "accepted";
}

TEST(MeasuredMachine, KernelRatesAndSlotsRoundTrip) {
  json j = a100();
  j["node"]["gpu"]["kernel_gwork_per_s"] = {{"gemm NN", 20}, {"gelu", 3}};
  j["node"]["compute_slots"] = 2;
  const ClusterSpec c = parse_cluster(j, "m.json");
  EXPECT_EQ(c.node.compute_slots, 2);
  EXPECT_DOUBLE_EQ(rate_at(c.node.gpu.kernel_rates.at("gemm NN"), 1e6), 2e10);
  const ClusterSpec again = parse_cluster(cluster_to_json(c), "m.json");
  EXPECT_EQ(again.node.compute_slots, 2);
  EXPECT_EQ(again.node.gpu.kernel_rates, c.node.gpu.kernel_rates);
}

TEST(MeasuredMachine, RatesBySizeInterpolateInLogWork) {
  json j = a100();
  j["node"]["gpu"]["kernel_gwork_per_s"] = {{"gemm NN", {{1e4, 2}, {1e6, 10}}}, {"gelu", 3}};
  const ClusterSpec c = parse_cluster(j, "m.json");
  const RateCurve& gemm = c.node.gpu.kernel_rates.at("gemm NN");
  EXPECT_DOUBLE_EQ(rate_at(gemm, 1e4), 2e9);
  EXPECT_DOUBLE_EQ(rate_at(gemm, 1e5), 6e9);   // halfway in log(work)
  EXPECT_DOUBLE_EQ(rate_at(gemm, 1e2), 2e9);   // below the smallest: its rate
  EXPECT_DOUBLE_EQ(rate_at(gemm, 1e9), 1e10);  // above the largest: its rate
  const ClusterSpec again = parse_cluster(cluster_to_json(c), "m.json");
  EXPECT_EQ(again.node.gpu.kernel_rates, c.node.gpu.kernel_rates);
  EXPECT_TRUE(cluster_to_json(c)["node"]["gpu"]["kernel_gwork_per_s"]["gelu"].is_number());
}

TEST(MeasuredMachine, BadRateCurvesNameTheirPoint) {
  json j = a100();
  j["node"]["gpu"]["kernel_gwork_per_s"] = {{"gelu", json::array()}};
  EXPECT_NE(error_of(j).find("m.json: node.gpu.kernel_gwork_per_s.gelu: expected a positive number or a non-empty list"),
            std::string::npos);
  for (const json& bad : {json{{1, 2}, {3}}, json{{1, 2}, {0, 5}}, json{{1, 2}, {4, -1}}, json{{1, 2}, "x"}}) {
    j["node"]["gpu"]["kernel_gwork_per_s"] = {{"gelu", bad}};
    EXPECT_NE(error_of(j).find("m.json: node.gpu.kernel_gwork_per_s.gelu[1]: expected a [work, rate] pair"),
              std::string::npos)
        << bad.dump();
  }
}

TEST(MeasuredMachine, HotRatesAndTheirCacheRoundTrip) {
  json j = a100();
  j["node"]["gpu"]["kernel_gwork_per_s"] = {{"gemm NN", {{1e6, 10}}}};
  j["node"]["gpu"]["kernel_hot_gwork_per_s"] = {{"gemm NN", {{1e6, 14}}}};
  j["node"]["gpu"]["kernel_cache_mib"] = 2;
  const ClusterSpec c = parse_cluster(j, "m.json");
  EXPECT_DOUBLE_EQ(rate_at(c.node.gpu.kernel_hot_rates.at("gemm NN"), 1e6), 1.4e10);
  EXPECT_DOUBLE_EQ(c.node.gpu.kernel_cache_bytes, 2.0 * (1 << 20));
  const ClusterSpec again = parse_cluster(cluster_to_json(c), "m.json");
  EXPECT_EQ(again.node.gpu.kernel_hot_rates, c.node.gpu.kernel_hot_rates);
  EXPECT_DOUBLE_EQ(again.node.gpu.kernel_cache_bytes, c.node.gpu.kernel_cache_bytes);
}

TEST(MeasuredMachine, HotRatesNeedTheirCache) {
  json j = a100();
  j["node"]["gpu"]["kernel_gwork_per_s"] = {{"gemm NN", 10}};
  j["node"]["gpu"]["kernel_hot_gwork_per_s"] = {{"gemm NN", 14}};
  EXPECT_NE(error_of(j).find("m.json: node.gpu.kernel_hot_gwork_per_s: expected \"kernel_cache_mib\" beside it"),
            std::string::npos)
      << error_of(j);
  j["node"]["gpu"]["kernel_cache_mib"] = 0;
  EXPECT_NE(error_of(j).find("m.json: node.gpu.kernel_cache_mib: expected a positive number"), std::string::npos)
      << error_of(j);
  j["node"]["gpu"]["kernel_cache_mib"] = 2;
  j["node"]["gpu"]["kernel_hot_gwork_per_s"] = {{"gelu", 3}};  // no cold rate for it
  EXPECT_NE(error_of(j).find("m.json: node.gpu.kernel_hot_gwork_per_s.gelu: expected a class of \"kernel_gwork_per_s\""),
            std::string::npos)
      << error_of(j);
  j["node"]["gpu"]["kernel_hot_gwork_per_s"] = {{"gemm NN", {{1e6, -1}}}};
  EXPECT_NE(error_of(j).find("m.json: node.gpu.kernel_hot_gwork_per_s.gemm NN[0]: expected a [work, rate] pair"),
            std::string::npos)
      << error_of(j);
}

TEST(MeasuredMachine, GpusHaveNeither) {
  const ClusterSpec c = parse_cluster(a100(), "m.json");
  EXPECT_EQ(c.node.compute_slots, 0);
  EXPECT_TRUE(c.node.gpu.kernel_rates.empty());
  EXPECT_FALSE(cluster_to_json(c)["node"].contains("compute_slots"));
}

TEST(MeasuredMachine, BadRatesAndSlotsNameTheirPath) {
  json j = a100();
  j["node"]["gpu"]["kernel_gwork_per_s"] = {{"gelu", -1}};
  EXPECT_NE(error_of(j).find("m.json: node.gpu.kernel_gwork_per_s.gelu: expected a positive number"), std::string::npos);
  j["node"]["gpu"]["kernel_gwork_per_s"] = 5;
  EXPECT_NE(error_of(j).find("m.json: node.gpu.kernel_gwork_per_s: expected an object"), std::string::npos);
  j = a100();
  j["node"]["compute_slots"] = 0;
  EXPECT_NE(error_of(j).find("m.json: node.compute_slots: expected a positive integer"), std::string::npos);
  j["node"]["compute_slots"] = 100000;
  EXPECT_NE(error_of(j).find("m.json: node.compute_slots: expected at most 4096"), std::string::npos);
}

TEST(KernelClass, GemmsByLayoutOthersByKind) {
  GemmOp g;
  g.m = 4, g.n = 8, g.k = 16;
  EXPECT_EQ(kernel_class(g), "gemm NN");
  EXPECT_DOUBLE_EQ(kernel_work(g), 2.0 * 4 * 8 * 16);
  g.trans_a = true, g.batch = 3, g.accumulate = true;
  EXPECT_EQ(kernel_class(g), "gemm TN batched accumulate");
  g.broadcast_a = true, g.trans_a = false, g.trans_b = true, g.accumulate = false;
  EXPECT_EQ(kernel_class(g), "gemm NT broadcast");
  TensorOp t;
  t.kind = TensorOpKind::softmax_xent;
  t.bytes_read = 100, t.bytes_written = 20, t.flop = 1e6;
  EXPECT_EQ(kernel_class(t), "softmax_xent");
  EXPECT_DOUBLE_EQ(kernel_work(t), 120);  // bytes, not flop: the class's rate is per byte
  AttentionOp a;
  a.backward = true;
  EXPECT_EQ(kernel_class(a), "attention bwd");
}

}  // namespace
}  // namespace moesys::core
