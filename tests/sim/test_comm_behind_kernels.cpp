// A communication kernel issued after a kernel that fills the GPU (Calibration::comm_waits_behind_kernels): it
// starts when the kernel running on another stream ends, not before, and only if that kernel was issued first; the
// kernels queued behind it on its stream come after the communication kernel; a copy-engine collective, which holds
// no SM, does not wait; off (the default) it starts at once. Closed forms with interference off, so that the kernels
// and the collective take their times alone. Every simulation runs in its own process.
#include <gtest/gtest.h>

#include "fork_run.hpp"
#include "sim/simulation.hpp"

using namespace moesys;

namespace {

struct Issue {
  int gemms_before = 0;  // GEMMs issued on the compute stream before the all-gather
  int gemms_after = 0;   // and after it
  core::CollectiveAlgo algo = core::CollectiveAlgo::automatic;
  bool coalesce = false;
};

// Rank 0's end times (from the start) of the all-gather of 256 MiB and of the last GEMM (8192^3, bf16; 0 for none)
// on one H100 node, every rank issuing the same.
std::vector<double> run(core::Calibration cal, const Issue& issue) {
  cal.comm_kernel_sms = cal.comm_hbm_traffic = cal.ce_hbm_traffic = 0;  // no interference: closed forms
  core::ClusterGeneratorOptions o;
  o.nodes = 1;
  o.gpu = "h100";
  const auto spec = core::generate_cluster(o);
  return test::run_in_child([&] {
    sim::SimOptions opt;
    opt.calibration = cal;
    opt.coalesce_kernels = issue.coalesce;
    double gather = 0, gemm = 0;
    sim::simulate(
        spec, spec.total_gpus(),
        [&](core::Runtime& rt) {
          const auto world = core::Group::world(rt.world_size());
          core::Buffer none;
          core::GemmOp op;
          op.m = op.n = op.k = 8192;
          const double t0 = rt.now_s();
          core::Event last{};
          for (int i = 0; i < issue.gemms_before; ++i) last = rt.compute(core::streams::kCompute, op, "gemm");
          auto ag = rt.all_gather(core::streams::kComm, world, none, none, 256u << 20, issue.algo);
          for (int i = 0; i < issue.gemms_after; ++i) last = rt.compute(core::streams::kCompute, op, "gemm");
          rt.wait(ag);
          if (rt.rank() == 0) gather = rt.now_s() - t0;
          rt.wait(last);
          if (rt.rank() == 0) gemm = rt.now_s() - t0;
        },
        opt);
    return std::vector<double>{gather, gemm};
  });
}

core::Calibration waiting() {
  core::Calibration cal;
  cal.comm_waits_behind_kernels = 1;
  return cal;
}

}  // namespace

TEST(CommBehindKernels, AnAllGatherIssuedAfterARunningGemmStartsWhenItEnds) {
  const double gather = run(waiting(), {0, 0}).at(0);
  const double gemm = run(core::Calibration{}, {1, 0}).at(1);  // the GEMM alone: nothing slows it
  ASSERT_GT(gather, 1e-4);
  for (bool coalesce : {false, true}) {
    const auto t = run(waiting(), {1, 0, core::CollectiveAlgo::automatic, coalesce});
    EXPECT_NEAR(t.at(0), gemm + gather, 1e-6 * gemm) << "coalesced kernels: " << coalesce;
  }
  // Off, it starts at once beside the GEMM.
  EXPECT_NEAR(run(core::Calibration{}, {1, 0}).at(0), gather, 1e-6 * gather);
}

TEST(CommBehindKernels, OnlyTheKernelRunningNowHoldsItBack) {
  const double gather = run(waiting(), {0, 0}).at(0);
  const double one = run(core::Calibration{}, {1, 0}).at(1);
  // Two GEMMs issued before it: the second reaches the scheduler after the all-gather, which runs beside it.
  for (bool coalesce : {false, true}) {
    const auto t = run(waiting(), {2, 0, core::CollectiveAlgo::automatic, coalesce});
    EXPECT_NEAR(t.at(0), one + gather, 1e-6 * one) << "coalesced kernels: " << coalesce;
    EXPECT_NEAR(t.at(1), 2 * one, 1e-6 * one) << "coalesced kernels: " << coalesce;
  }
}

TEST(CommBehindKernels, KernelsIssuedAfterItDoNotHoldItBack) {
  const double gather = run(waiting(), {0, 0}).at(0);
  for (bool coalesce : {false, true})
    EXPECT_NEAR(run(waiting(), {0, 2, core::CollectiveAlgo::automatic, coalesce}).at(0), gather, 1e-6 * gather)
        << "coalesced kernels: " << coalesce;
}

TEST(CommBehindKernels, ACopyEngineCollectiveTakesNoSmAndDoesNotWait) {
  const double gather = run(waiting(), {0, 0, core::CollectiveAlgo::copy_engine}).at(0);
  EXPECT_NEAR(run(waiting(), {1, 0, core::CollectiveAlgo::copy_engine}).at(0), gather, 1e-6 * gather);
}
