// The per-family calibration tables: which family a GPU belongs to, which table it gets, overrides over a family's
// table, and the EFA network's own latency and ramp.
#include <gtest/gtest.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "core/calibration.hpp"
#include "core/error.hpp"

using namespace moesys::core;

TEST(CalibrationTables, GpuModelsMapToTheirFamily) {
  EXPECT_EQ(gpu_family_of("A100-SXM4-80GB"), "a100");
  EXPECT_EQ(gpu_family_of("a100-40g"), "a100");
  EXPECT_EQ(gpu_family_of("H100-SXM5-80GB"), "h100");
  EXPECT_EQ(gpu_family_of("H800-SXM5-80GB"), "h100");  // the same chip with less NVLink
  EXPECT_EQ(gpu_family_of("H200-SXM5-141GB"), "h200");
  EXPECT_EQ(gpu_family_of("cpu-rank"), "");
}

TEST(CalibrationTables, EachFamilyHasItsTableAndOthersGetTheA100One) {
  const auto a100 = nlohmann::json(calibration_to_json(default_calibration()));
  EXPECT_EQ(calibration_to_json(default_calibration_for("a100")), a100);
  EXPECT_EQ(calibration_to_json(default_calibration_for("")), a100);
  EXPECT_NE(calibration_to_json(default_calibration_for("h100")), a100);
  EXPECT_NE(calibration_to_json(default_calibration_for("h200")), a100);
  // The prior is fitted on nothing: not any family's table.
  EXPECT_NE(calibration_to_json(prior_calibration()), a100);
}

TEST(CalibrationTables, TheH200KeepsTheH100InterconnectsLatencies) {
  // The same NVLink 4 / NVSwitch and NICs: NCCL's latencies and ramps are the H100's; efficiencies are its own.
  const Calibration h100 = default_calibration_for("h100"), h200 = default_calibration_for("h200");
  for (double Calibration::*p : {&Calibration::collective_latency_s, &Calibration::step_latency_s,
                                 &Calibration::ll_step_latency_s, &Calibration::ll128_step_latency_s,
                                 &Calibration::net_step_latency_s, &Calibration::nvls_latency_s,
                                 &Calibration::half_bandwidth_bytes, &Calibration::host_launch_s})
    EXPECT_EQ(h200.*p, h100.*p);
  EXPECT_NE(h200.nvlink_efficiency, h100.nvlink_efficiency);
  // What differs from the H100 table is exactly what the recipe (which cross-validation follows) refits.
  const FamilyRecipe recipe = family_recipe("h200");
  EXPECT_EQ(recipe.base_family, "h100");
  const nlohmann::json a = calibration_to_json(h100), b = calibration_to_json(h200);
  for (const auto& [key, value] : a.items()) {
    const bool own = std::find(recipe.own_parameters.begin(), recipe.own_parameters.end(), key) !=
                     recipe.own_parameters.end();
    EXPECT_EQ(b.at(key) != value, own) << key;
  }
  EXPECT_TRUE(family_recipe("a100").base_family.empty());
}

TEST(CalibrationTables, ABenchmarkLoopPaysEachPointToPointPost) {
  Calibration c;
  c.host_launch_s = 10e-6;
  c.host_p2p_op_s = 1e-6;
  EXPECT_DOUBLE_EQ(c.launch_loop_time(5e-6, 8), 80e-6);
  EXPECT_DOUBLE_EQ(c.launch_loop_time(5e-6, 8, 16), 208e-6);  // an all-to-all of 8 ranks: 8 sends, 8 receives
  EXPECT_DOUBLE_EQ(c.launch_loop_time(300e-6, 8, 16), 300e-6);  // the GPU is the longer
}

TEST(CalibrationTables, AnOverrideFileChangesOnlyItsKeysOfTheFamilyTable) {
  const Calibration h100 = default_calibration_for("h100");
  const Calibration c = parse_calibration(nlohmann::json{{"comm_sm_share", 0.15}}, "x.json", h100);
  EXPECT_EQ(c.comm_sm_share, 0.15);
  EXPECT_EQ(c.nvls_latency_s, h100.nvls_latency_s);
  EXPECT_EQ(c.gemm_fp8_efficiency, h100.gemm_fp8_efficiency);
}

TEST(CalibrationTables, ThePointToPointPathHasItsOwnRampInsideANode) {
  Calibration c;
  c.half_bandwidth_bytes = 1e5;
  c.p2p_half_bandwidth_bytes = 8e5;
  c.nic_half_bandwidth_bytes = 2e5;
  EXPECT_EQ(c.message_efficiency(1e5, false, false), 0.5);  // a ring's step
  EXPECT_EQ(c.message_efficiency(8e5, false, true), 0.5);   // send/receive, all-to-all
  EXPECT_EQ(c.message_efficiency(2e5, true, true), 0.5);    // across the network: the NIC's ramp either way
  c.p2p_half_bandwidth_bytes = 0;                            // none: the ring's
  EXPECT_EQ(c.message_efficiency(1e5, false, true), 0.5);
}

TEST(CalibrationTables, AnEfaNetworkUsesItsOwnLatencyAndRamp) {
  Calibration c;
  c.net_step_latency_s = 4e-6;
  c.efa_step_latency_s = 30e-6;
  c.nic_half_bandwidth_bytes = 1e5;
  c.efa_half_bandwidth_bytes = 4e5;
  c.nic_efficiency = 0.9;
  c.efa_efficiency = 0.6;
  const Calibration efa = for_network(c, true), rdma = for_network(c, false);
  EXPECT_EQ(efa.net_step_latency_s, 30e-6);
  EXPECT_EQ(efa.nic_efficiency, 0.6);
  EXPECT_EQ(rdma.nic_efficiency, 0.9);
  EXPECT_EQ(efa.message_efficiency(4e5, true), 0.5);
  EXPECT_EQ(rdma.net_step_latency_s, 4e-6);
  EXPECT_EQ(rdma.message_efficiency(1e5, true), 0.5);
  EXPECT_EQ(efa.message_efficiency(c.half_bandwidth_bytes, false), 0.5);  // NVLink keeps its own ramp
}

TEST(CalibrationTables, TheInterferenceShareIsAtMostHalf) {
  EXPECT_EQ(parse_calibration(nlohmann::json{{"comm_sm_share", 0.5}}, "x.json").comm_sm_share, 0.5);
  EXPECT_THROW(parse_calibration(nlohmann::json{{"comm_sm_share", 0.6}}, "x.json"), ConfigError);
}
