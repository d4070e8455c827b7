// Copy engines' paths against closed forms: a fixed setup cost and then the link's full rate (no protocol ramp),
// PCIe duplex contention between host copies in the two directions, and GPU-to-GPU copies at the copy engines' own
// NVLink efficiency.
#include <gtest/gtest.h>

#include "core/cluster_graph.hpp"
#include "fork_run.hpp"
#include "sim/sim_runtime.hpp"
#include "sim/simulation.hpp"

using namespace moesys;

namespace {

core::ClusterSpec one_node(bool nvswitch = true) {
  core::ClusterGeneratorOptions o;
  o.nodes = 1;
  core::ClusterSpec spec = core::generate_cluster(o);
  if (!nvswitch) spec.node.intra_node.kind = core::IntraNodeKind::pcie_only;
  return spec;
}

// Rank 0's end times of copies it issues together: `h2d` and `d2h` bytes between its memory and the host's (0: none),
// and `peer` bytes to GPU 1.
std::vector<double> copy_ends(const core::ClusterSpec& spec, const core::Calibration& cal, double h2d, double d2h,
                              double peer = 0) {
  return test::run_in_child([&] {
    sim::SimOptions opt;
    opt.calibration = cal;
    std::vector<double> ends(3, 0.0);
    sim::simulate(
        spec, 2,
        [&](core::Runtime& rt) {
          if (rt.rank() != 0) return;
          using core::Tier;
          const auto big = static_cast<std::uint64_t>(std::max({h2d, d2h, peer}));
          core::Buffer host{1, Tier::dram, big, nullptr}, dev{2, Tier::hbm, big, nullptr};
          const double t0 = rt.now_s();
          std::vector<core::Event> events(3);
          if (h2d > 0) events[0] = rt.copy(core::streams::kH2D, dev, host, static_cast<std::uint64_t>(h2d));
          if (d2h > 0) events[1] = rt.copy(core::streams::kD2H, host, dev, static_cast<std::uint64_t>(d2h));
          if (peer > 0)
            events[2] = dynamic_cast<sim::SimRuntime&>(rt).peer_copy(core::streams::kComm, 1,
                                                                     static_cast<std::uint64_t>(peer));
          for (int i = 0; i < 3; ++i) {
            if (events[static_cast<std::size_t>(i)].id == 0) continue;
            rt.wait(events[static_cast<std::size_t>(i)]);
            ends[static_cast<std::size_t>(i)] = rt.now_s() - t0;
          }
        },
        opt);
    return ends;
  });
}

// GPU 0's one-direction PCIe rate to host memory (the efficiency-scaled link rate, its slowest on the way).
double pcie_rate(const core::ClusterSpec& spec, const core::Calibration& cal) {
  const core::ClusterGraph graph(spec, cal);
  return graph.bottleneck_bytes_per_s(graph.route(graph.gpu(0), graph.cpu(0)));
}

constexpr double kTolerance = 2e-9;  // SimGrid's timing precision (1e-9 s) at two events

}  // namespace

TEST(CopyPaths, HostCopyPaysItsSetupThenRunsAtTheLinkRate) {
  // No ramp: a 4 KiB copy and a 256 MiB one both move at the full rate after the same setup cost.
  const auto spec = one_node();
  const core::Calibration cal = core::default_calibration();
  const double rate = pcie_rate(spec, cal);
  for (double bytes : {4096.0, 256.0 * 1024 * 1024}) {
    EXPECT_NEAR(copy_ends(spec, cal, bytes, 0)[0], cal.copy_setup_s + bytes / rate, kTolerance) << bytes;
    EXPECT_NEAR(copy_ends(spec, cal, 0, bytes)[1], cal.copy_setup_s + bytes / rate, kTolerance) << bytes;
  }
}

TEST(CopyPaths, BothDirectionsAtOnceShareTheDuplexConstraint) {
  // nvbandwidth's bidirectional pair: the D2H copy is twice the H2D one, so it runs beside it all along. While both
  // run, each gets half of 2 x rate x pcie_duplex_efficiency; then the D2H copy is alone at the full rate.
  const auto spec = one_node();
  core::Calibration cal = core::default_calibration();
  cal.pcie_duplex_efficiency = 0.7;
  const double rate = pcie_rate(spec, cal), bytes = 64.0 * 1024 * 1024;
  const auto ends = copy_ends(spec, cal, bytes, 2 * bytes);
  const double shared = bytes / (rate * 0.7);
  EXPECT_NEAR(ends[0], cal.copy_setup_s + shared, kTolerance);
  EXPECT_NEAR(ends[1], cal.copy_setup_s + shared + bytes / rate, kTolerance);
  // At 1 the two directions are independent: each takes what it takes alone.
  cal.pcie_duplex_efficiency = 1;
  const auto ideal = copy_ends(spec, cal, bytes, 2 * bytes);
  EXPECT_NEAR(ideal[0], cal.copy_setup_s + bytes / rate, kTolerance);
  EXPECT_NEAR(ideal[1], cal.copy_setup_s + 2 * bytes / rate, kTolerance);
}

TEST(CopyPaths, PeerCopyRunsAtTheCopyEnginesNvlinkEfficiency) {
  // Over the NVSwitch: the spec rate times ce_nvlink_efficiency (not the NCCL kernels' nvlink_efficiency), whether
  // that is above or below the kernels'. On a PCIe-only node: the PCIe route's rate, as a host copy.
  const double bytes = 256.0 * 1024 * 1024;
  core::Calibration cal = core::default_calibration();
  const auto spec = one_node();
  for (double ce : {0.9, 0.6}) {
    cal.ce_nvlink_efficiency = ce;
    const double spec_rate = spec.node.intra_node.bytes_per_s_per_gpu;
    EXPECT_NEAR(copy_ends(spec, cal, 0, 0, bytes)[2], cal.copy_setup_s + bytes / (spec_rate * ce), kTolerance) << ce;
  }
  const auto pcie = one_node(false);
  const core::ClusterGraph graph(pcie, cal);
  const double rate = graph.bottleneck_bytes_per_s(graph.route(graph.gpu(0), graph.gpu(1)));
  EXPECT_NEAR(copy_ends(pcie, cal, 0, 0, bytes)[2], cal.copy_setup_s + bytes / rate, kTolerance);
}

TEST(CopyPaths, RdmaThroughTheNicIgnoresTheDuplexConstraint) {
  // Only copy engines' host copies share a PCIe link's duplex constraint: a send and a receive between nodes cross
  // the GPU's PCIe link in both directions at once, each at its own rate.
  core::ClusterGeneratorOptions o;
  o.nodes = 2;
  const core::ClusterSpec spec = core::generate_cluster(o);
  auto exchange = [&](double duplex) {
    core::Calibration cal = core::default_calibration();
    cal.pcie_duplex_efficiency = duplex;
    return test::run_in_child([&] {
             sim::SimOptions opt;
             opt.calibration = cal;
             double t = 0;
             sim::simulate(
                 spec, spec.total_gpus(),
                 [&](core::Runtime& rt) {
                   const int peer = rt.rank() == 0 ? 8 : rt.rank() == 8 ? 0 : -1;
                   if (peer < 0) return;
                   const double t0 = rt.now_s();
                   auto s = rt.send(core::streams::kComm, peer, {}, 256u << 20, 0);
                   auto r = rt.recv(core::streams::kComm2, peer, {}, 256u << 20, 0);
                   rt.wait(s);
                   rt.wait(r);
                   if (rt.rank() == 0) t = rt.now_s() - t0;
                 },
                 opt);
             return std::vector<double>{t};
           })
        .at(0);
  };
  EXPECT_EQ(exchange(0.5), exchange(1.0));
}
