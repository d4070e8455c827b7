// DeepEP-style dispatch and combine (sim/collectives/deepep.cpp) against closed forms: the normal kernels cross
// the network once per (token, node) along the rail and forward over NVLink, combine mirrors dispatch, and the
// low-latency kernels pay their fixed cost and DeepEP's NVLink rate. Simulations run in their own processes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <tuple>

#include "fork_run.hpp"
#include "sim/collectives.hpp"
#include "sim/simulation.hpp"

using namespace moesys;

namespace {

core::ClusterSpec cluster(int nodes, int gpus) {
  core::ClusterGeneratorOptions o;
  o.nodes = nodes;
  o.gpus_per_node = gpus;
  o.nics_per_node = gpus;
  return core::generate_cluster(o);
}

// A deepep call over every GPU of `spec`: rows[i] are member i's bytes to every member, nodes[i] its node traffic.
sim::CollectiveCall deepep_call(const core::ClusterSpec& spec, const std::vector<std::vector<double>>& rows,
                                const std::vector<core::NodeTraffic>& nodes) {
  sim::CollectiveCall call;
  call.op = sim::CollectiveOp::all_to_all;
  for (int g = 0; g < spec.total_gpus(); ++g) call.members.push_back(g);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    std::vector<double> row = rows[i];
    sim::append_node_traffic(spec, call.members, nodes[i], row);
    call.matrix.push_back(std::move(row));
  }
  return call;
}

// (from, to, bytes) of every transfer of a one-stage plan, sorted.
std::vector<std::tuple<int, int, double>> flows_of(const sim::CollectivePlan& plan) {
  EXPECT_EQ(plan.size(), 1u);
  std::vector<std::tuple<int, int, double>> out;
  plan.front().for_each_transfer([&](const sim::Transfer& t) { out.emplace_back(t.src_gpu, t.dst_gpu, t.bytes); });
  std::sort(out.begin(), out.end());
  return out;
}

// Simulated time of one all-to-all over all GPUs, member i sending row(i) with node traffic nodes(i).
double time_of(const core::ClusterSpec& spec, const core::Calibration& cal, core::CollectiveAlgo algo,
               const std::function<std::vector<std::uint64_t>(int)>& row,
               const std::function<core::NodeTraffic(int)>& nodes) {
  return test::run_in_child([&] {
           sim::SimOptions opt;
           opt.calibration = cal;
           double elapsed = 0;
           sim::simulate(
               spec, spec.total_gpus(),
               [&](core::Runtime& rt) {
                 const auto world = core::Group::world(rt.world_size());
                 core::Buffer none;
                 const auto r = row(rt.rank());
                 const double t0 = rt.now_s();
                 rt.wait(rt.all_to_all(core::streams::kComm, world, none, r, none, r, algo, nodes(rt.rank())));
                 if (rt.rank() == 0) elapsed = rt.now_s() - t0;
               },
               opt);
           return std::vector<double>{elapsed};
         })
      .at(0);
}

}  // namespace

TEST(DeepEp, DispatchCrossesTheNetworkOncePerNodeAndForwardsOverNvlink) {
  // 2 nodes x 4 GPUs. Member 0 sends one 100-byte token to members 5 and 6 (node 1) and 30 bytes to member 1.
  const auto spec = cluster(2, 4);
  std::vector<std::vector<double>> rows(8, std::vector<double>(8, 0.0));
  rows[0][5] = rows[0][6] = 100;
  rows[0][1] = 30;
  std::vector<core::NodeTraffic> nodes(8, core::NodeTraffic{{0, 0}, false});
  nodes[0].bytes = {30, 100};  // the token is one copy over the network
  const auto plan = sim::plan_collective(spec, core::Calibration{}, deepep_call(spec, rows, nodes),
                                         core::CollectiveAlgo::deepep);
  // Along the rail to GPU 4 (node 1, local 0), which forwards to 5 and 6; 0 -> 1 stays on NVLink.
  const std::vector<std::tuple<int, int, double>> expected = {{0, 1, 30}, {0, 4, 100}, {4, 5, 100}, {4, 6, 100}};
  EXPECT_EQ(flows_of(plan), expected);
  EXPECT_EQ(plan.front().net_latency_steps, 1);
}

TEST(DeepEp, CombineMirrorsDispatchAndSumsOnTheRailGpu) {
  const auto spec = cluster(2, 4);
  std::vector<std::vector<double>> rows(8, std::vector<double>(8, 0.0));
  rows[5][0] = rows[6][0] = 100;  // experts on 5 and 6 return their halves of member 0's token
  std::vector<core::NodeTraffic> nodes(8, core::NodeTraffic{{0, 0}, true});
  nodes[0].bytes = {0, 100};  // member 0 receives the summed token once
  const auto plan = sim::plan_collective(spec, core::Calibration{}, deepep_call(spec, rows, nodes),
                                         core::CollectiveAlgo::deepep);
  const std::vector<std::tuple<int, int, double>> expected = {{4, 0, 100}, {5, 4, 100}, {6, 4, 100}};
  EXPECT_EQ(flows_of(plan), expected);
}

TEST(DeepEp, WithoutNodeTrafficEveryCopyCrossesTheNetwork) {
  const auto spec = cluster(2, 4);
  std::vector<std::vector<double>> rows(8, std::vector<double>(8, 0.0));
  rows[0][5] = rows[0][6] = 100;
  const auto plan = sim::plan_collective(spec, core::Calibration{},
                                         deepep_call(spec, rows, std::vector<core::NodeTraffic>(8)),
                                         core::CollectiveAlgo::deepep);
  const std::vector<std::tuple<int, int, double>> expected = {{0, 4, 200}, {4, 5, 100}, {4, 6, 100}};
  EXPECT_EQ(flows_of(plan), expected);
}

TEST(DeepEp, CombineWithoutNodeTrafficOnAGroupOfLaterNodes) {
  // Members are GPUs 4..11 of 3 nodes x 4 (nodes 1 and 2). GPUs 9 and 10 return 100 and 50 bytes to GPU 4; without
  // node traffic nothing is summed away, so the rail GPU of GPU 4 on node 2 (GPU 8) sends 4 all 150 bytes.
  const auto spec = cluster(3, 4);
  sim::CollectiveCall call;
  call.op = sim::CollectiveOp::all_to_all;
  for (int g = 4; g < 12; ++g) call.members.push_back(g);
  for (int i = 0; i < 8; ++i) {
    std::vector<double> row(8, 0.0);
    if (i == 5) row[0] = 100;
    if (i == 6) row[0] = 50;
    sim::append_node_traffic(spec, call.members, core::NodeTraffic{{}, true}, row);
    call.matrix.push_back(std::move(row));
  }
  const auto plan = sim::plan_collective(spec, core::Calibration{}, call, core::CollectiveAlgo::deepep);
  const std::vector<std::tuple<int, int, double>> expected = {{8, 4, 150}, {9, 8, 100}, {10, 8, 50}};
  EXPECT_EQ(flows_of(plan), expected);
}

TEST(DeepEp, NodeTrafficMustNameEveryNodeAndRailsMustExist) {
  const auto spec = cluster(2, 4);
  std::vector<int> members = {0, 1, 2, 3, 4, 5, 6, 7};
  std::vector<double> row(8, 0.0);
  EXPECT_THROW(sim::append_node_traffic(spec, members, core::NodeTraffic{{1, 2, 3}, false}, row),
               std::invalid_argument);
  // Members 0, 1 on node 0 and only 4 on node 1: member 1 has no rail GPU there.
  sim::CollectiveCall call;
  call.op = sim::CollectiveOp::all_to_all;
  call.members = {0, 1, 4};
  for (int i = 0; i < 3; ++i) {
    std::vector<double> r = {0, 0, 10};
    sim::append_node_traffic(spec, call.members, {}, r);
    call.matrix.push_back(r);
  }
  EXPECT_THROW(sim::plan_collective(spec, core::Calibration{}, call, core::CollectiveAlgo::deepep),
               std::invalid_argument);
  // Nodes whose GPUs share no NVLink cannot run DeepEP's kernels at all.
  core::ClusterSpec pcie = cluster(2, 4);
  pcie.node.intra_node = {core::IntraNodeKind::pcie_only, 0};
  const auto full = deepep_call(pcie, std::vector<std::vector<double>>(8, std::vector<double>(8, 10.0)),
                                std::vector<core::NodeTraffic>(8));
  for (auto algo : {core::CollectiveAlgo::deepep, core::CollectiveAlgo::deepep_ll})
    EXPECT_THROW(sim::plan_collective(pcie, core::Calibration{}, full, algo), std::invalid_argument);
}

TEST(DeepEp, DeduplicatedDispatchIsBoundByTheNicAtOneCopyPerNode) {
  // Every member sends one 8 MB token set to all 4 GPUs of the other node: 1 copy per node over the NIC, 3
  // forwarded over NVLink (which is far faster), against 4 copies over the NIC for the direct all-to-all.
  const auto spec = cluster(2, 4);
  const core::Calibration cal;
  const double b = 8e6;
  auto row = [&](int r) {
    std::vector<std::uint64_t> out(8, 0);
    for (int j = 0; j < 8; ++j)
      if (spec.node_of(j) != spec.node_of(r)) out[static_cast<std::size_t>(j)] = static_cast<std::uint64_t>(b);
    return out;
  };
  auto nodes = [&](int r) {
    core::NodeTraffic t{{0, 0}, false};
    t.bytes[static_cast<std::size_t>(1 - spec.node_of(r))] = static_cast<std::uint64_t>(b);
    return t;
  };
  const double deepep = time_of(spec, cal, core::CollectiveAlgo::deepep, row, nodes);
  const double nic = spec.node.nics.bytes_per_s * spec.node.nics.count / spec.node.gpus * cal.nic_efficiency;
  const double expected = cal.collective_latency_s + cal.step_latency_s + cal.net_step_latency_s +
                          b / cal.message_rate(nic, b, true);
  EXPECT_NEAR(deepep, expected, expected * 1e-3);
  const double direct = time_of(spec, cal, core::CollectiveAlgo::direct, row, nodes);
  EXPECT_GT(direct, 3.5 * deepep);
}

TEST(DeepEp, LowLatencyPaysItsFixedCostAndDeepEpsNvlinkRate) {
  // One node of 8: every member sends b to each of the 7 others, all in flight at once.
  const auto spec = cluster(1, 8);
  core::Calibration cal;
  cal.ep_nvlink_efficiency = cal.nvlink_efficiency / 2;
  cal.ep_ll_latency_s = 30e-6;
  const double b = 1e6;
  auto row = [&](int r) {
    std::vector<std::uint64_t> out(8, static_cast<std::uint64_t>(b));
    out[static_cast<std::size_t>(r)] = 0;
    return out;
  };
  const double t = time_of(spec, cal, core::CollectiveAlgo::deepep_ll, row, [](int) { return core::NodeTraffic{}; });
  // No per-peer latency; the ramp sees the member's whole send (7 b).
  const double rate = spec.node.intra_node.bytes_per_s_per_gpu * cal.ep_nvlink_efficiency;
  const double expected =
      cal.collective_latency_s + cal.step_latency_s + cal.ep_ll_latency_s + 7 * b / cal.message_rate(rate, 7 * b);
  EXPECT_NEAR(t, expected, expected * 1e-3);
}

TEST(DeepEp, LowLatencyAcrossNodesSendsEachCopyStraightThroughTheSendersNic) {
  // Two nodes of 4 GPUs and 4 NICs: every member sends b to each of the 7 others at once, 3 over NVLink and 4 by
  // RDMA through its own NIC (no forwarding by a node's GPUs, no PXN); the ramp sees the member's whole send (7 b),
  // the latency is the kernel's fixed cost and one network step. At 4 MB per copy the NIC bounds the call.
  const auto spec = cluster(2, 4);
  core::Calibration cal;
  cal.ep_ll_latency_s = 15e-6;
  const double b = 4e6;
  auto row = [&](int r) {
    std::vector<std::uint64_t> out(8, static_cast<std::uint64_t>(b));
    out[static_cast<std::size_t>(r)] = 0;
    return out;
  };
  const double t = time_of(spec, cal, core::CollectiveAlgo::deepep_ll, row, [](int) { return core::NodeTraffic{}; });
  const double nvlink = 3 * b / cal.message_rate(spec.node.intra_node.bytes_per_s_per_gpu * cal.ep_nvlink_efficiency, 7 * b);
  const double nic = 4 * b / cal.message_rate(spec.node.nics.bytes_per_s * cal.nic_efficiency, 7 * b, true);
  ASSERT_GT(nic, nvlink);
  const double expected =
      cal.collective_latency_s + cal.step_latency_s + cal.net_step_latency_s + cal.ep_ll_latency_s + nic;
  EXPECT_NEAR(t, expected, expected * 2e-3);
}
