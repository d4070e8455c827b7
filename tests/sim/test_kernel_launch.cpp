// The fixed cost of a kernel (Calibration::kernel_launch_s, sim/compute_model.cpp): every kernel pays it once on
// top of its roofline time, so N equal kernels back to back take N (roofline + launch), coalesced or not, and a
// table with no launch cost leaves the roofline alone.
#include <gtest/gtest.h>

#include "fork_run.hpp"
#include "sim/compute_model.hpp"
#include "sim/simulation.hpp"
#include "small_programs.hpp"

using namespace moesys;

namespace {

constexpr int kKernels = 12;
constexpr std::int64_t kSize = 1024;  // 2 GFLOP: the roofline time is some microseconds, like the launch cost

double stream_time(double launch_s, bool coalesce) {
  return test::run_in_child([=] {
           sim::SimOptions o;
           o.calibration.kernel_launch_s = launch_s;
           o.coalesce_kernels = coalesce;
           double t = 0;
           sim::simulate(
               test::nodes(1), 1,
               [&](core::Runtime& rt) {
                 for (int i = 0; i < kKernels; ++i) rt.compute(core::streams::kCompute, test::square_gemm(kSize), "k");
                 rt.synchronize();
                 t = rt.now_s();
               },
               o);
           return std::vector<double>{t};
         })
      .at(0);
}

double roofline_s() {
  core::Calibration cal;
  cal.kernel_launch_s = 0;
  return sim::kernel_cost(test::square_gemm(kSize), test::nodes(1).node.gpu, cal).seconds;
}

}  // namespace

TEST(KernelLaunch, EveryKernelPaysItsFixedCostOnce) {
  const double roofline = roofline_s(), launch = 5e-6;
  ASSERT_GT(roofline, 0);
  for (bool coalesce : {false, true}) {
    EXPECT_NEAR(stream_time(launch, coalesce), kKernels * (roofline + launch), 1e-9 * kKernels * roofline)
        << "coalesce " << coalesce;
    EXPECT_NEAR(stream_time(0, coalesce), kKernels * roofline, 1e-9 * kKernels * roofline) << "coalesce " << coalesce;
  }
}
