// NCCL's copy-engine all-gather and all-to-all (sim/collectives/copy_engine.cpp) against closed forms: two barriers
// and one DMA setup, then every GPU's copies at the copy engines' NVLink rate with no ramp; no SMs held, so a GEMM
// beside it loses only the HBM bandwidth of the copies; a group across nodes, a node without NVLink and an
// all-reduce are refused. Every simulation runs in its own process.
#include <gtest/gtest.h>

#include "fork_run.hpp"
#include "sim/collectives.hpp"
#include "sim/progress_load.hpp"
#include "sim/simulation.hpp"

using namespace moesys;

namespace {

core::ClusterSpec h100_nodes(int nodes) {
  core::ClusterGeneratorOptions o;
  o.nodes = nodes;
  o.gpu = "h100";
  return core::generate_cluster(o);
}

// Rank 0's times for an all-gather of `bytes` (nccl-tests' size) with `algo` on every GPU of one H100 node, and for
// a GEMM of 8192^3 issued beside it on the compute stream (the GEMM outlasts it).
std::vector<double> all_gather_and_gemm(const core::Calibration& cal, double bytes, core::CollectiveAlgo algo) {
  const auto spec = h100_nodes(1);
  return test::run_in_child([&] {
    sim::SimOptions opt;
    opt.calibration = cal;
    double gather = 0, gemm = 0;
    sim::simulate(
        spec, spec.total_gpus(),
        [&](core::Runtime& rt) {
          const auto world = core::Group::world(rt.world_size());
          core::Buffer none;
          const double t0 = rt.now_s();
          const auto b = static_cast<std::uint64_t>(bytes);
          auto ag = rt.all_gather(core::streams::kComm, world, none, none, b, algo);
          core::GemmOp op;
          op.m = op.n = op.k = 8192;
          auto g = rt.compute(core::streams::kCompute, op, "gemm");
          rt.wait(ag);
          if (rt.rank() == 0) gather = rt.now_s() - t0;
          rt.wait(g);
          if (rt.rank() == 0) gemm = rt.now_s() - t0;
        },
        opt);
    return std::vector<double>{gather, gemm};
  });
}

double gemm_alone(const core::Calibration& cal) {
  core::Calibration quiet = cal;
  quiet.comm_kernel_sms = quiet.comm_hbm_traffic = quiet.ce_hbm_traffic = 0;
  // Beside an empty all-gather: nothing to copy, so nothing in flight while the GEMM runs.
  return all_gather_and_gemm(quiet, 0, core::CollectiveAlgo::copy_engine).at(1);
}

}  // namespace

TEST(CopyEngine, AnAllGatherIsTwoBarriersASetupAndTheCopiesAtTheEnginesRate) {
  core::Calibration cal;
  cal.collective_latency_s = 0;
  const double bytes = 1 << 30, chunk = bytes / 8;
  const double t = all_gather_and_gemm(cal, bytes, core::CollectiveAlgo::copy_engine).at(0);
  // Each GPU's NVLink port sends its chunk to 7 peers and receives 7 chunks, at the copy engines' rate.
  const double expected = 2 * cal.step_latency_s + cal.copy_setup_s + 7 * chunk / (450e9 * cal.ce_nvlink_efficiency);
  EXPECT_NEAR(t, expected, expected * 1e-6);
}

TEST(CopyEngine, AGemmBesideItLosesOnlyTheCopiesHbmBandwidth) {
  const core::Calibration cal;
  const auto spec = h100_nodes(1);
  // No SMs: the HBM share of the copies, 2 x 450 GB/s x ce_nvlink_efficiency of 3352 GB/s x hbm_efficiency, is the
  // whole share (NCCL's kernel would take the larger of its 24 SMs and 3 x its own rate).
  const double share = 2 * 450e9 * cal.ce_nvlink_efficiency / (3352e9 * cal.hbm_efficiency);
  EXPECT_NEAR(sim::copy_engine_share(spec, cal), share, 1e-9);
  EXPECT_LT(sim::copy_engine_share(spec, cal), sim::communication_share(spec, cal, {0, 1}, 0));
  core::Calibration off = cal;
  off.ce_hbm_traffic = 0;
  EXPECT_EQ(sim::copy_engine_share(spec, off), 0);
  // End to end: the GEMM runs at (1 - share) for as long as the all-gather does, then at full speed.
  const double alone = gemm_alone(cal);
  const auto beside = all_gather_and_gemm(cal, 1 << 28, core::CollectiveAlgo::copy_engine);
  const double gather = beside.at(0), gemm = beside.at(1);
  ASSERT_GT(alone, gather);
  EXPECT_NEAR(gemm, alone + share * gather, alone * 1e-4);
}

TEST(CopyEngine, ServesAllGatherAndAllToAllInsideOneNvlinkNode) {
  using core::CollectiveAlgo;
  EXPECT_EQ(sim::resolve_algo(sim::CollectiveOp::all_gather, CollectiveAlgo::copy_engine), CollectiveAlgo::copy_engine);
  EXPECT_EQ(sim::resolve_algo(sim::CollectiveOp::all_to_all, CollectiveAlgo::copy_engine), CollectiveAlgo::copy_engine);
  EXPECT_THROW(sim::resolve_algo(sim::CollectiveOp::all_reduce, CollectiveAlgo::copy_engine), std::invalid_argument);
  EXPECT_THROW(sim::resolve_algo(sim::CollectiveOp::reduce_scatter, CollectiveAlgo::copy_engine),
               std::invalid_argument);
  const auto two = h100_nodes(2);
  EXPECT_NO_THROW(sim::check_copy_engine(two, {0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_THROW(sim::check_copy_engine(two, {0, 8}), std::invalid_argument);
  auto pcie = two;
  pcie.node.intra_node.kind = core::IntraNodeKind::pcie_only;
  EXPECT_THROW(sim::check_copy_engine(pcie, {0, 1}), std::invalid_argument);
  // An all-to-all's matrix, row by row, each entry one copy.
  sim::CollectiveCall call;
  call.op = sim::CollectiveOp::all_to_all;
  call.members = {0, 1, 2};
  call.matrix = {{0, 10, 20}, {30, 0, 0}, {40, 50, 0}};
  const auto plan = sim::plan_copy_engine(two, core::Calibration{}, call);
  ASSERT_EQ(plan.size(), 1u);
  double bytes = 0;
  int copies = 0;
  plan[0].for_each_transfer([&](const sim::Transfer& t) {
    bytes += t.bytes;
    ++copies;
    EXPECT_TRUE(t.copy_engine);
  });
  EXPECT_EQ(copies, 5);
  EXPECT_EQ(bytes, 150);
}
