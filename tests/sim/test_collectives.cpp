// Collective algorithms on small simulated clusters: exact times against hand calculations (golden values
// from the model's own formulas), the aggregated flow model against the detailed one, and the algorithms
// against each other.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.hpp"
#include "fork_run.hpp"
#include "sim/collectives.hpp"
#include "sim/simulation.hpp"

using namespace moesys;

namespace {

core::ClusterSpec cluster(int nodes, int gpus = 8, int nics = 8) {
  core::ClusterGeneratorOptions o;
  o.nodes = nodes;
  o.gpus_per_node = gpus;
  o.nics_per_node = nics;
  return core::generate_cluster(o);
}

// Simulated time of one collective over all GPUs; all_to_all uses `matrix_of(i, j)` bytes.
double time_collective(const core::ClusterSpec& spec, sim::CollectiveOp op, double bytes, core::CollectiveAlgo algo,
                       sim::FlowMode mode, const std::function<double(int, int)>& matrix_of = {}) {
  sim::SimOptions opt;
  opt.flow_mode = mode;
  double elapsed = 0;
  sim::simulate(
      spec, spec.total_gpus(),
      [&](core::Runtime& rt) {
        auto world = core::Group::world(rt.world_size());
        core::Buffer none;
        const double t0 = rt.now_s();
        core::Event e;
        if (op == sim::CollectiveOp::all_reduce) {
          e = rt.all_reduce(core::streams::kComm, world, none, static_cast<std::uint64_t>(bytes), core::Dtype::fp32,
                            algo);
        } else {
          std::vector<std::uint64_t> row;
          for (int j = 0; j < rt.world_size(); ++j)
            row.push_back(static_cast<std::uint64_t>(matrix_of ? matrix_of(rt.rank(), j) : bytes / rt.world_size()));
          e = rt.all_to_all(core::streams::kComm, world, none, row, none, row, algo);
        }
        rt.wait(e);
        if (rt.rank() == 0) elapsed = rt.now_s() - t0;
      },
      opt);
  return elapsed;
}

double in_child(const std::function<double()>& fn) {
  return test::run_in_child([&] { return std::vector<double>{fn()}; }).at(0);
}

// One all-to-all in its own process (SimGrid runs one simulation per process).
double all_to_all_in_child(const core::ClusterSpec& spec, double bytes, core::CollectiveAlgo algo, sim::FlowMode mode,
                           const std::function<double(int, int)>& matrix_of = {}) {
  return in_child([&] { return time_collective(spec, sim::CollectiveOp::all_to_all, bytes, algo, mode, matrix_of); });
}

}  // namespace

TEST(Collectives, RingAllReduceOnOneNodeMatchesTheFormula) {
  auto spec = cluster(1);
  const double bytes = 256.0 * 1024 * 1024;
  const double t = time_collective(spec, sim::CollectiveOp::all_reduce, bytes, core::CollectiveAlgo::ring,
                                   sim::FlowMode::aggregated);
  const auto cal = core::default_calibration();
  const double link = 300e9 * cal.nvlink_efficiency;
  const double chunk = bytes / 8;
  const double expected =
      cal.collective_latency_s + 14 * cal.step_latency_s + 14 * chunk / cal.message_rate(link, chunk);
  EXPECT_NEAR(t, expected, expected * 1e-6);
}

TEST(Collectives, DirectAllToAllOnOneNodeIsBoundByTheNvlinkPorts) {
  auto spec = cluster(1);
  const auto cal = core::default_calibration();
  for (const double bytes : {1024.0 * 1024 * 1024, 64.0 * 1024}) {
    const double t = all_to_all_in_child(spec, bytes, core::CollectiveAlgo::direct, sim::FlowMode::aggregated);
    // Seven messages of bytes/8 leave every GPU at once and share its NVLink port, in one step (no network peer);
    // each runs on channels of its own and ramps on its own size, bytes/8, on the point-to-point path's ramp
    // (p2p_half_bandwidth_bytes), not a ring's.
    const double expected =
        cal.collective_latency_s + cal.step_latency_s +
        (bytes * 7 / 8) / (300e9 * cal.nvlink_efficiency * cal.message_efficiency(bytes / 8, false, true));
    EXPECT_NEAR(t, expected, expected * 1e-3) << bytes << " bytes";
  }
}

TEST(Collectives, AggregatedAllToAllMatchesDetailedOnTwoNodes) {
  auto spec = cluster(2);
  const double bytes = 256.0 * 1024 * 1024;
  double agg = all_to_all_in_child(spec, bytes, core::CollectiveAlgo::direct, sim::FlowMode::aggregated);
  double det = all_to_all_in_child(spec, bytes, core::CollectiveAlgo::direct, sim::FlowMode::detailed);
  EXPECT_NEAR(agg / det, 1.0, 0.02) << "aggregated " << agg << " s, detailed " << det << " s";
}

TEST(Collectives, AggregatedMatchesDetailedForHierarchicalAndRingOnFourNodes) {
  auto spec = cluster(4, 4, 2);
  const double bytes = 64.0 * 1024 * 1024;
  for (auto [op, algo] : {std::pair{sim::CollectiveOp::all_to_all, core::CollectiveAlgo::hierarchical},
                          std::pair{sim::CollectiveOp::all_reduce, core::CollectiveAlgo::ring}}) {
    double agg = in_child([&] { return time_collective(spec, op, bytes, algo, sim::FlowMode::aggregated); });
    double det = in_child([&] { return time_collective(spec, op, bytes, algo, sim::FlowMode::detailed); });
    EXPECT_NEAR(agg / det, 1.0, 0.02) << sim::to_string(op) << ": aggregated " << agg << " s, detailed " << det;
  }
}

TEST(Collectives, AggregatedStaysCloseToDetailedOnSkewedAllToAll) {
  // An all-to-allv where every rank sends 4x more to expert ranks 0 and 9 than to the others.
  auto spec = cluster(2);
  auto skew = [](int, int j) { return (j == 0 || j == 9 ? 4.0 : 1.0) * 8.0 * 1024 * 1024; };
  double agg = all_to_all_in_child(spec, 0, core::CollectiveAlgo::direct, sim::FlowMode::aggregated, skew);
  double det = all_to_all_in_child(spec, 0, core::CollectiveAlgo::direct, sim::FlowMode::detailed, skew);
  EXPECT_NEAR(agg / det, 1.0, 0.02) << "aggregated " << agg << " s, detailed " << det << " s";
}

TEST(Collectives, HierarchicalAllToAllBeatsFlatWithoutPxnWhenTheSpineIsOversubscribed) {
  // Without PXN, flat all-to-all sends 7/8 of its inter-node bytes across rails, through the spine; the
  // hierarchical one keeps every inter-node byte on its rail (with PXN, NCCL's does too: tests/sim/test_pxn.cpp).
  auto spec = cluster(4);
  spec.fabric.oversubscription = 2.0;
  spec.node.nics.pxn = false;
  const double bytes = 64.0 * 1024 * 1024;
  double flat = all_to_all_in_child(spec, bytes, core::CollectiveAlgo::direct, sim::FlowMode::aggregated);
  double hier = all_to_all_in_child(spec, bytes, core::CollectiveAlgo::hierarchical, sim::FlowMode::aggregated);
  EXPECT_LT(hier, 0.8 * flat) << "hierarchical " << hier << " s, flat " << flat << " s";
}

TEST(Collectives, HierarchicalAllToAllBeatsFlatForSmallMessagesAcrossManyNodes) {
  // 4 MiB per rank over 64 GPUs: flat sends 64 KiB messages, hierarchical 512 KiB ones, which use links better.
  auto spec = cluster(8);
  const double bytes = 4.0 * 1024 * 1024;
  double flat = all_to_all_in_child(spec, bytes, core::CollectiveAlgo::direct, sim::FlowMode::aggregated);
  double hier = all_to_all_in_child(spec, bytes, core::CollectiveAlgo::hierarchical, sim::FlowMode::aggregated);
  EXPECT_LT(hier, flat) << "hierarchical " << hier << " s, flat " << flat << " s";
}

TEST(Collectives, UnknownAlgorithmForAnOperationIsRejected) {
  EXPECT_THROW(sim::resolve_algo(sim::CollectiveOp::all_reduce, core::CollectiveAlgo::hierarchical),
               std::invalid_argument);
  EXPECT_THROW(sim::resolve_algo(sim::CollectiveOp::all_to_all, core::CollectiveAlgo::ring), std::invalid_argument);
  EXPECT_EQ(sim::resolve_algo(sim::CollectiveOp::all_to_all, core::CollectiveAlgo::automatic),
            core::CollectiveAlgo::direct);
}

TEST(Collectives, SameInputsGiveTheSameSimulatedTime) {
  auto spec = cluster(2);
  auto skew = [](int i, int j) { return ((i * 7 + j * 3) % 5 + 1) * 1024.0 * 1024; };
  auto run = [&] {
    return all_to_all_in_child(spec, 0, core::CollectiveAlgo::direct, sim::FlowMode::aggregated, skew);
  };
  EXPECT_EQ(run(), run());
}
