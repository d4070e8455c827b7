// How far apart tables are on the same configuration (cli/calibration_agreement.cpp): the best single value per
// configuration is the geometric mean of the tables' times, and its error on each point is what they disagree.
#include <gtest/gtest.h>

#include <cmath>

#include "cli/calibration_agreement.hpp"

using namespace moesys;

namespace {

cli::CalibrationPoint point(const std::string& source, double bytes, double measured, const std::string& unit,
                            double model) {
  cli::CalibrationPoint p;
  p.id = source + std::to_string(bytes);
  p.category = "allreduce";
  p.source = source;
  p.gpu_preset = "a100-80g";
  p.size_bytes = bytes;
  p.measured = measured;
  p.unit = unit;
  p.model = model;
  return p;
}

}  // namespace

TEST(TableAgreement, TheBestValueIsTheGeometricMeanOfTheTablesTimes) {
  // Two tables time the same call at 10 us and 40 us: the best single value is 20 us, off by +100% and -50%.
  const std::vector<cli::CalibrationPoint> points = {point("a", 1024, 10, "us", 15), point("b", 1024, 40, "us", 15),
                                                     point("a", 2048, 12, "us", 15)};  // one table only: not counted
  const cli::TableAgreement agree = cli::table_agreement(points);
  EXPECT_EQ(agree.configurations, 1);
  ASSERT_EQ(agree.errors.size(), 2u);
  EXPECT_NEAR(agree.errors[0], 1.0, 1e-12);
  EXPECT_NEAR(agree.errors[1], 0.5, 1e-12);
  EXPECT_NEAR(agree.model_errors[0], 0.5, 1e-12);    // 15 against 10
  EXPECT_NEAR(agree.model_errors[1], 0.625, 1e-12);  // 15 against 40
}

TEST(TableAgreement, ATimeAndABandwidthOfTheSameCallCompareThroughTheModel) {
  // The model says 100 us, or 50 GB/s. One table times 80 us, the other reads 25 GB/s, i.e. 200 us: the best single
  // value is 126.5 us (sqrt(80 x 200)), 39.5 GB/s.
  const std::vector<cli::CalibrationPoint> points = {point("a", 1 << 20, 80, "us", 100),
                                                     point("b", 1 << 20, 25, "GB/s", 50)};
  const cli::TableAgreement agree = cli::table_agreement(points);
  ASSERT_EQ(agree.errors.size(), 2u);
  const double best_us = std::sqrt(80.0 * 200.0);
  EXPECT_NEAR(agree.errors[0], best_us / 80 - 1, 1e-12);
  EXPECT_NEAR(agree.errors[1], (50 * 100 / best_us) / 25 - 1, 1e-12);  // 39.5 GB/s against 25
}

TEST(TableAgreement, DifferentMachinesOrHarnessesAreDifferentConfigurations) {
  auto b = point("b", 1024, 40, "us", 15);
  b.nodes = 2;
  auto c = point("c", 1024, 40, "us", 15);
  c.harness = cli::CalibrationPoint::Harness::cuda_graph;
  auto d = point("d", 1024, 40, "us", 15);
  d.gpus_per_thread = 8;
  const cli::TableAgreement agree = cli::table_agreement({point("a", 1024, 10, "us", 15), b, c, d});
  EXPECT_EQ(agree.configurations, 0);
  EXPECT_TRUE(agree.errors.empty());
}
