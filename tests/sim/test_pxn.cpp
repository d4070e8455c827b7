// NCCL's PXN in the flow engine: a point-to-point message between rails crosses the NVSwitch to the GPU on the
// destination's rail and leaves through its NIC. Checked against closed forms on a fabric whose spine is
// oversubscribed, where the rail a message takes decides its rate.
#include <gtest/gtest.h>

#include "core/cluster_graph.hpp"
#include "fork_run.hpp"
#include "sim/simulation.hpp"

using namespace moesys;

namespace {

// 2 nodes of 2 GPUs on an NVSwitch, one NIC per GPU (two rails), and a spine at a quarter of the leaves' capacity:
// a message that crosses the spine gets half a NIC's rate (2 downlinks per leaf / 4).
core::ClusterSpec two_rails() {
  core::ClusterGeneratorOptions o;
  o.nodes = 2;
  o.gpus_per_node = 2;
  o.nics_per_node = 2;
  core::ClusterSpec spec = core::generate_cluster(o);
  spec.fabric.oversubscription = 4.0;
  return spec;
}

// Simulated time of one message of `bytes` from GPU `src` to GPU `dst`.
double send_time(core::ClusterSpec spec, int src, int dst, double bytes, bool pxn) {
  spec.node.nics.pxn = pxn;
  return test::run_in_child([&] {
           double elapsed = 0;
           sim::simulate(
               spec, spec.total_gpus(),
               [&](core::Runtime& rt) {
                 core::Buffer none;
                 const auto b = static_cast<std::uint64_t>(bytes);
                 const double t0 = rt.now_s();
                 if (rt.rank() == src) rt.wait(rt.send(core::streams::kComm, dst, none, b, 0));
                 if (rt.rank() == dst) {
                   rt.wait(rt.recv(core::streams::kComm, src, none, b, 0));
                   elapsed = rt.now_s() - t0;
                 }
               });
           return std::vector<double>{elapsed};
         })
      .at(0);
}

// Closed form of one message: one network step of Simple latency, then the bytes at the message's share of the
// slowest link on the way (p2p_efficiency x the network ramp x that link's efficiency-scaled rate).
double message_time(const core::Calibration& cal, double bytes, double bottleneck_bytes_per_s) {
  const double rate = bottleneck_bytes_per_s * cal.message_efficiency(bytes, true) * cal.p2p_efficiency;
  // One network step after the receiver's buffer post has crossed the network, and one network peer for NCCL's
  // proxy to post.
  return cal.step_latency_s + 2 * cal.net_step_latency_s + cal.alltoall_net_peer_latency_s + bytes / rate;
}

}  // namespace

TEST(Pxn, MessageBetweenRailsStaysOnTheDestinationsRail) {
  const core::ClusterSpec spec = two_rails();
  const core::Calibration cal = core::default_calibration();
  const core::ClusterGraph graph(spec, cal);
  const double bytes = 256.0 * 1024 * 1024;
  // GPU 0 (node 0, rail 0) to GPU 3 (node 1, rail 1). With PXN, GPU 1 (node 0, rail 1) forwards: the network leg
  // is GPU 1 -> GPU 3 on rail 1, the NVLink leg GPU 0 -> GPU 1 runs beside it at a far higher rate.
  const double rail = graph.bottleneck_bytes_per_s(graph.route(graph.gpu(1), graph.gpu(3)));
  const double direct = graph.bottleneck_bytes_per_s(graph.route(graph.gpu(0), graph.gpu(3)));
  ASSERT_NEAR(direct, rail / 2, rail * 1e-12) << "the direct route should be bound by the oversubscribed spine";
  const double tolerance = 2e-9;
  EXPECT_NEAR(send_time(spec, 0, 3, bytes, true), message_time(cal, bytes, rail), tolerance);
  EXPECT_NEAR(send_time(spec, 0, 3, bytes, false), message_time(cal, bytes, direct), tolerance);
  EXPECT_NEAR(send_time(spec, 1, 2, bytes, false), message_time(cal, bytes, direct), tolerance);
  // A message on its own rail is the same with or without PXN.
  EXPECT_NEAR(send_time(spec, 0, 2, bytes, true), message_time(cal, bytes, rail), tolerance);
}

TEST(Pxn, NvlinkLegSharesTheSourcePortWithIntraNodeTraffic) {
  // GPU 0 sends 256 MiB to GPU 3 (through GPU 1) and, at once, 2 GiB to GPU 1 over NVLink: GPU 0's NVLink port and
  // GPU 1's ingress port carry both. Without PXN the two messages share no link.
  const core::ClusterSpec spec = two_rails();
  // Messages without NCCL's channel bound: in a communicator across nodes a send inside a node gets the few
  // channels a network peer needs (p2p_channels.cpp) and would leave the port half idle; this test is about the port.
  core::Calibration cal = core::default_calibration();
  cal.p2p_channel_bytes_per_s = 0;
  sim::SimOptions options;
  options.calibration = cal;
  auto both = [&](bool pxn) {
    core::ClusterSpec machine = spec;
    machine.node.nics.pxn = pxn;
    return test::run_in_child([&] {
             double local = 0;
             sim::simulate(
                 machine, machine.total_gpus(),
                 [&](core::Runtime& rt) {
                   core::Buffer none;
                   const std::uint64_t remote = 256ull << 20, near = 2048ull << 20;
                   const double t0 = rt.now_s();
                   if (rt.rank() == 0) {
                     auto a = rt.send(core::streams::kComm, 3, none, remote, 0);
                     auto b = rt.send(core::streams::kComm2, 1, none, near, 1);
                     rt.wait(a);
                     rt.wait(b);
                   }
                   if (rt.rank() == 3) rt.wait(rt.recv(core::streams::kComm, 0, none, remote, 0));
                   if (rt.rank() == 1) {
                     rt.wait(rt.recv(core::streams::kComm2, 0, none, near, 1));
                     local = rt.now_s() - t0;
                   }
                 },
                 options);
             return std::vector<double>{local};
           })
        .at(0);
  };
  const double with_pxn = both(true), without = both(false);
  // Max-min on GPU 0's port (and GPU 1's): while both flows run, each gets half of the port and moves bytes at its
  // own efficiency times that half. The NVLink leg (it runs at its own pace: PXN pipelines in chunks) ends first;
  // the local message has then lost exactly the port time the leg took: bytes / (its efficiency x the port rate).
  const double remote = 256.0 * 1024 * 1024;
  const double nvlink = spec.node.intra_node.bytes_per_s_per_gpu * cal.nvlink_efficiency;
  const double leg_time = remote / (nvlink * cal.message_efficiency(remote, true) * cal.p2p_efficiency);
  EXPECT_NEAR(with_pxn - without, leg_time, 2e-9) << "with PXN " << with_pxn << " s, without " << without << " s";
}

TEST(Pxn, FlatAllToAllNoLongerCrossesAnOversubscribedSpine) {
  // With PXN every inter-node byte of a flat all-to-all leaves on its destination's rail: on 4 nodes (one leaf per
  // rail) the spine carries nothing, so its oversubscription does not change the time. Without PXN 7/8 of the
  // inter-node bytes cross it.
  auto all_to_all = [](double oversubscription, bool pxn) {
    core::ClusterGeneratorOptions o;
    o.nodes = 4;
    core::ClusterSpec spec = core::generate_cluster(o);
    spec.fabric.oversubscription = oversubscription;
    spec.node.nics.pxn = pxn;
    return test::run_in_child([&] {
             sim::SimResult r = sim::simulate(
                 spec, spec.total_gpus(),
                 [&](core::Runtime& rt) {
                   core::Buffer none;
                   std::vector<std::uint64_t> row(static_cast<std::size_t>(rt.world_size()), 2ull << 20);
                   rt.wait(rt.all_to_all(core::streams::kComm, core::Group::world(rt.world_size()), none, row, none,
                                         row, core::CollectiveAlgo::direct));
                 });
             return std::vector<double>{r.makespan_s, r.bytes_by_path_class[2]};
           });
  };
  const auto fast = all_to_all(1.0, true), slow_spine = all_to_all(4.0, true), no_pxn = all_to_all(4.0, false);
  EXPECT_EQ(slow_spine[1], 0.0) << "bytes across the spine with PXN";
  EXPECT_GT(no_pxn[1], 0.0);
  EXPECT_NEAR(slow_spine[0], fast[0], 2e-9);
  EXPECT_GT(no_pxn[0], 1.5 * slow_spine[0]);
}
