// NCCL's point-to-point channels (sim/collectives/p2p_channels.cpp) against the rule's closed form, and a message's
// rate bound (channels x Calibration::p2p_channel_bytes_per_s) against the time it gives. Every simulation runs in
// its own process.
#include <gtest/gtest.h>

#include <functional>

#include "fork_run.hpp"
#include "sim/collectives.hpp"
#include "sim/simulation.hpp"

using namespace moesys;

namespace {

core::ClusterSpec cluster(int nodes, const std::string& gpu, double nic_gbits = 0) {
  core::ClusterGeneratorOptions o;
  o.nodes = nodes;
  o.gpu = gpu;
  if (nic_gbits > 0) o.nic_gbits_per_s = nic_gbits;
  return core::generate_cluster(o);
}

constexpr double kMiB = 1024.0 * 1024;

// Seconds rank 0 spends in `body` on `ranks` GPUs of `spec`, in a child process.
double elapsed_s(const core::ClusterSpec& spec, int ranks, const core::Calibration& cal,
                 const std::function<void(core::Runtime&)>& body) {
  return test::run_in_child([&] {
           sim::SimOptions opt;
           opt.calibration = cal;
           double elapsed = 0;
           sim::simulate(
               spec, ranks,
               [&](core::Runtime& rt) {
                 const double t0 = rt.now_s();
                 body(rt);
                 if (rt.rank() == 0) elapsed = rt.now_s() - t0;
               },
               opt);
           return std::vector<double>{elapsed};
         })
      .at(0);
}

// nccl-tests' sendrecv_perf on every GPU of one node: each sends `bytes` to the next and receives from the previous.
double sendrecv_s(const core::ClusterSpec& spec, const core::Calibration& cal, double bytes) {
  return elapsed_s(spec, spec.total_gpus(), cal, [bytes](core::Runtime& rt) {
    const int n = rt.world_size(), r = rt.rank();
    const auto b = static_cast<std::uint64_t>(bytes);
    const core::Event s = rt.send(core::streams::kComm, (r + 1) % n, {}, b, 0);
    const core::Event v = rt.recv(core::streams::kComm2, (r + n - 1) % n, {}, b, 0);
    rt.wait(s);
    rt.wait(v);
  });
}

}  // namespace

TEST(P2pChannels, OneNodeOfEightStartsOnFourAndDoublesPastSixteenMiBAPart) {
  // 32 channels, every one a peer may use; 8 ranks leave each 4. Parts of 64 KiB at least, 16 MiB at most.
  const sim::P2pChannelRule rule = sim::p2p_channel_rule(cluster(1, "h100"), 8, 1);
  EXPECT_EQ(rule.max_channels, 32);
  EXPECT_EQ(rule.min_channels, 4);
  EXPECT_EQ(rule.channels(64 * 1024), 1);
  EXPECT_EQ(rule.channels(128 * 1024 + 1), 3);
  EXPECT_EQ(rule.channels(32 * kMiB), 4);
  EXPECT_EQ(rule.channels(64 * kMiB), 4);   // 16 MiB a part: not past the limit
  EXPECT_EQ(rule.channels(128 * kMiB), 8);  // the step the sendrecv sweeps show between 64 and 128 MiB
  EXPECT_EQ(rule.channels(256 * kMiB), 16);
  EXPECT_EQ(rule.channels(512 * kMiB), 32);
  EXPECT_EQ(rule.channels(16 * 1024 * kMiB), 32);  // no more than the peer may use
}

TEST(P2pChannels, FewerRanksLeaveEachPeerMoreChannels) {
  const core::ClusterSpec node = cluster(1, "a100-80g");
  EXPECT_EQ(sim::p2p_channel_rule(node, 2, 1).min_channels, 16);
  EXPECT_EQ(sim::p2p_channel_rule(node, 4, 1).min_channels, 8);
  EXPECT_EQ(sim::p2p_channel_rule(node, 64, 1).min_channels, 1);
}

TEST(P2pChannels, ACommunicatorAcrossNodesGivesEveryPeerANetworkPeersTwo) {
  // NCCL 2.21-2.28: 2 channels a network peer, which every peer gets (the fewest any peer gets), 1 once 2 x ranks
  // would exceed 4 operations on each of the 32 channels. Parts of NCCL's 128 KiB network chunk, at least half of one.
  const sim::P2pChannelRule two_nodes = sim::p2p_channel_rule(cluster(2, "h100", 400), 16, 2);
  EXPECT_EQ(two_nodes.max_channels, 2);
  EXPECT_EQ(two_nodes.min_channels, 2);  // 2 x 16 ranks fit the 32 channels
  EXPECT_EQ(two_nodes.channels(64 * 1024), 1);
  EXPECT_EQ(two_nodes.channels(200 * 1024), 2);
  EXPECT_EQ(two_nodes.channels(64 * kMiB), 2);
  EXPECT_EQ(sim::p2p_channel_rule(cluster(2, "a100-80g", 200), 64, 8).max_channels, 2);
  const sim::P2pChannelRule many = sim::p2p_channel_rule(cluster(2, "h100", 400), 65, 9);
  EXPECT_EQ(many.max_channels, 1);
  EXPECT_EQ(many.channels(64 * kMiB), 1);
}

TEST(P2pChannels, AMessageMovesNoFasterThanItsChannels) {
  // On one node, a 64 MiB send runs on 4 channels: its time is the call's latency and 64 MiB at 4 x the channel
  // rate, far below NVLink's. At 512 MiB it runs on all 32 and the link is the limit again.
  const core::ClusterSpec spec = cluster(1, "h100");
  core::Calibration cal;
  cal.p2p_channel_bytes_per_s = 10e9;
  const double bytes = 64 * kMiB;
  core::Calibration unbounded = cal;
  unbounded.p2p_channel_bytes_per_s = 0;
  const double latency = sendrecv_s(spec, cal, 1);  // the same call with next to no bytes
  EXPECT_NEAR(sendrecv_s(spec, cal, bytes) - latency, bytes / (4 * cal.p2p_channel_bytes_per_s), 1e-6);
  const double big = 512 * kMiB;
  EXPECT_NEAR(sendrecv_s(spec, cal, big), sendrecv_s(spec, unbounded, big), 1e-9);
}

TEST(P2pChannels, AnAllToAllsPeersTogetherFillTheLink) {
  // Seven peers on 4 channels each move 28 channels' worth: with 20 GB/s a channel, more than an H100's NVLink
  // port, so the bound leaves a one-node all-to-all as it was.
  const core::ClusterSpec spec = cluster(1, "h100");
  core::Calibration cal = core::default_calibration_for("h100");
  core::Calibration unbounded = cal;
  unbounded.p2p_channel_bytes_per_s = 0;
  auto a2a = [&](const core::Calibration& c) {
    return elapsed_s(spec, 8, c, [](core::Runtime& rt) {
      const std::vector<std::uint64_t> row(8, 8 << 20);
      rt.wait(rt.all_to_all(core::streams::kComm, core::Group::world(8), {}, row, {}, row));
    });
  };
  EXPECT_NEAR(a2a(cal), a2a(unbounded), 1e-9);
}

TEST(P2pChannels, TheHierarchicalAllToAllsNodeStepRunsOnTheNodesCommunicator) {
  // Two nodes of 8: the first step runs on a communicator of the node's 8 GPUs (the CUDA runtime's), so a message
  // of 64 KiB or less gets 1 of NCCL's channels and 4 MiB gets 4; a pair sends one message per destination node.
  // The second step crosses nodes only and has no bound.
  const core::ClusterSpec spec = cluster(2, "h100", 400);
  core::Calibration cal = core::default_calibration_for("h100");
  const sim::P2pChannelRule node_rule = sim::p2p_channel_rule(spec, 8, 1);
  for (const double per_pair : {64.0 * 1024, 4 * kMiB}) {
    sim::CollectiveCall call;
    call.op = sim::CollectiveOp::all_to_all;
    for (int g = 0; g < 16; ++g) call.members.push_back(g);
    call.matrix.assign(16, std::vector<double>(16, per_pair));
    const sim::CollectivePlan plan = sim::plan_hierarchical_all_to_all(spec, cal, call);
    ASSERT_EQ(plan.size(), 2U);
    ASSERT_FALSE(plan[0].transfers.empty());
    for (const sim::Transfer& t : plan[0].transfers) {
      ASSERT_EQ(spec.node_of(t.src_gpu), spec.node_of(t.dst_gpu));
      EXPECT_DOUBLE_EQ(t.bytes, 2 * per_pair);  // its own and the other node's block for the peer's position
      EXPECT_DOUBLE_EQ(t.rate_cap, node_rule.channels(per_pair) * cal.p2p_channel_bytes_per_s);
    }
    for (const sim::Transfer& t : plan[1].transfers) EXPECT_EQ(t.rate_cap, 0);
  }
  EXPECT_EQ(node_rule.channels(64 * 1024), 1);
  EXPECT_EQ(node_rule.channels(4 * kMiB), 4);
}
