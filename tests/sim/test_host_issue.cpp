// Host issue time (Calibration::host_op_s, sim/sim_runtime.cpp): the rank's program spends h issuing each
// operation and an operation starts no earlier than its issue ends. Closed forms on one stream of N equal kernels
// of duration d: host-bound (h > d) the last kernel starts at N h, so the stream ends at N h + d; GPU-bound (h < d)
// the host is ahead after the first issue, so it ends at h + N d; and a wait stops the host from running ahead.
#include <gtest/gtest.h>

#include "fork_run.hpp"
#include "sim/simulation.hpp"
#include "small_programs.hpp"

using namespace moesys;

namespace {

constexpr int kKernels = 10;

/// The time to run `kernels` equal GEMMs issued back to back (coalesced or not), then, after a wait, one more.
std::vector<double> run(double host_op_s, bool coalesce) {
  return test::run_in_child([=] {
    sim::SimOptions o;
    o.calibration.host_op_s = host_op_s;
    o.coalesce_kernels = coalesce;
    double burst = 0, after_wait = 0;
    sim::simulate(
        test::nodes(1), 1,
        [&](core::Runtime& rt) {
          for (int i = 0; i < kKernels; ++i) rt.compute(core::streams::kCompute, test::square_gemm(2048), "k");
          rt.synchronize();
          burst = rt.now_s();
          rt.wait(rt.compute(core::streams::kCompute, test::square_gemm(2048), "k"));
          after_wait = rt.now_s() - burst;
        },
        o);
    return std::vector<double>{burst, after_wait};
  });
}

}  // namespace

TEST(HostIssue, OffLeavesKernelsBackToBack) {
  const auto off = run(0, false);
  const double d = off[1];  // one kernel
  EXPECT_NEAR(off[0], kKernels * d, 1e-9 * off[0]);
}

TEST(HostIssue, AHostSlowerThanTheKernelsSetsThePace) {
  const double d = run(0, false)[1];
  for (bool coalesce : {false, true}) {
    const auto t = run(2 * d, coalesce);
    EXPECT_NEAR(t[0], kKernels * 2 * d + d, 1e-9 * t[0]) << "coalesce " << coalesce;
    EXPECT_NEAR(t[1], 2 * d + d, 1e-9 * t[1]) << "after a wait the host issues from the moment it wakes";
  }
}

TEST(HostIssue, AHostFasterThanTheKernelsOnlyDelaysTheFirst) {
  const double d = run(0, false)[1];
  for (bool coalesce : {false, true}) {
    const auto t = run(d / 4, coalesce);
    EXPECT_NEAR(t[0], d / 4 + kKernels * d, 1e-9 * t[0]) << "coalesce " << coalesce;
    EXPECT_NEAR(t[1], d / 4 + d, 1e-9 * t[1]);
  }
}
