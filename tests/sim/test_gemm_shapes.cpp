// GEMM efficiency by shape and dtype against closed forms: the fp8 efficiency, the tile's fixed cost in K, the
// partial last wave of tiles, partial tiles and the split in K of fewer tiles than SMs.
#include <gtest/gtest.h>

#include "sim/compute_model.hpp"

using namespace moesys;

namespace {
core::GpuSpec gpu_with_sms(int sms) {
  core::GpuSpec g;
  g.model = "test";
  g.sms = sms;
  g.hbm_bytes_per_s = 1e15;
  g.peak_flop_per_s = {{core::Dtype::bf16, 1e15}, {core::Dtype::fp8, 2e15}, {core::Dtype::fp32, 1e14}};
  return g;
}
// The calibration's GEMM terms alone: full efficiency, no tile overhead (the tables' is set per test).
core::Calibration plain() {
  core::Calibration cal;
  cal.gemm_efficiency = 1;
  cal.gemm_tile_overhead_k = 0;
  return cal;
}
core::GemmOp gemm(std::int64_t m, std::int64_t n, std::int64_t k, core::Dtype d = core::Dtype::bf16) {
  core::GemmOp g;
  g.m = m;
  g.n = n;
  g.k = k;
  g.dtype = d;
  return g;
}
}  // namespace

TEST(GemmShapes, Fp8HasItsOwnEfficiency) {
  auto cal = plain();
  cal.gemm_efficiency = 0.9;
  cal.gemm_fp8_efficiency = 0.7;
  const auto g = gpu_with_sms(0);
  EXPECT_DOUBLE_EQ(sim::gemm_efficiency(gemm(4096, 4096, 4096), g, cal), 0.9);
  EXPECT_DOUBLE_EQ(sim::gemm_efficiency(gemm(4096, 4096, 4096, core::Dtype::fp8), g, cal), 0.7);
}

TEST(GemmShapes, ShallowKPaysTheTileOverhead) {
  auto cal = plain();
  cal.gemm_efficiency = 0.9;
  cal.gemm_tile_overhead_k = 512;
  const auto g = gpu_with_sms(0);
  EXPECT_DOUBLE_EQ(sim::gemm_efficiency(gemm(4096, 4096, 512), g, cal), 0.9 * 0.5);
  EXPECT_DOUBLE_EQ(sim::gemm_efficiency(gemm(4096, 4096, 1536), g, cal), 0.9 * 0.75);
}

TEST(GemmShapes, APartialLastWaveIdlesSms) {
  auto cal = plain();
  const auto g = gpu_with_sms(100);
  // 100 tiles: one full wave; 101 tiles: two waves, the second with one tile.
  EXPECT_DOUBLE_EQ(sim::gemm_efficiency(gemm(128 * 10, 128 * 10, 4096), g, cal), 1.0);
  EXPECT_DOUBLE_EQ(sim::gemm_efficiency(gemm(128 * 101, 128, 4096), g, cal), 101.0 / 200.0);
  // A batch of GEMMs shares the waves.
  auto batched = gemm(128 * 10, 128 * 5, 4096);
  batched.batch = 3;  // 150 tiles: 2 waves
  EXPECT_DOUBLE_EQ(sim::gemm_efficiency(batched, g, cal), 150.0 / 200.0);
  // The roofline uses it: a two-wave GEMM of 101 tiles takes as long as 200 tiles' work.
  const auto cost = sim::kernel_cost(gemm(128 * 101, 128, 4096), g, cal);
  EXPECT_NEAR(cost.seconds - cal.kernel_launch_s, 2.0 * 128 * 101 * 128 * 4096 / (1e15 * 101.0 / 200.0), 1e-12);
}

TEST(GemmShapes, Fp8GemmsWriteBf16) {
  // A memory-bound GEMM's bytes: A and B at the input dtype, C at the output dtype, bf16 for fp8 inputs (DeepGEMM,
  // Transformer Engine); C is read too when accumulating.
  core::Calibration cal;
  const auto g = gpu_with_sms(0);
  const double a_b = 64.0 * 2048 + 2048.0 * 7168, c = 64.0 * 7168;
  EXPECT_DOUBLE_EQ(sim::kernel_cost(gemm(64, 7168, 2048, core::Dtype::fp8), g, cal).bytes, a_b * 1 + c * 2);
  EXPECT_DOUBLE_EQ(sim::kernel_cost(gemm(64, 7168, 2048, core::Dtype::bf16), g, cal).bytes, (a_b + c) * 2);
  auto acc = gemm(64, 7168, 2048, core::Dtype::fp8);
  acc.accumulate = true;
  EXPECT_DOUBLE_EQ(sim::kernel_cost(acc, g, cal).bytes, a_b * 1 + 2 * c * 2);
}

namespace {
// One K step of one 128 x 128 tile on one SM of gpu_with_sms(sms) at efficiency 1: 2 x 128 x 128 flops at peak / SMs.
double tile_step_s(int sms) { return 2.0 * 128 * 128 / (1e15 / sms); }
// Writing and reading back one fp32 partial tile at the calibrated HBM rate.
double partial_tile_s(const core::GpuSpec& g, const core::Calibration& cal) {
  return 128.0 * 128 * 4 * 2 / (g.hbm_bytes_per_s * cal.hbm_efficiency);
}
}  // namespace

TEST(GemmShapes, FewerTilesThanSmsAreSplitInK) {
  auto cal = plain();
  const auto g = gpu_with_sms(100);
  // 25 tiles on 100 SMs: four slices of K = 1024 keep one wave; three partial tiles per output tile are summed.
  EXPECT_DOUBLE_EQ(sim::gemm_math_seconds(gemm(128 * 5, 128 * 5, 4096), g, cal),
                   1024 * tile_step_s(100) + 3 * 25 * partial_tile_s(g, cal));
  // Each slice pays the tile's fixed cost again.
  cal.gemm_tile_overhead_k = 512;
  EXPECT_DOUBLE_EQ(sim::gemm_math_seconds(gemm(128 * 5, 128 * 5, 4096), g, cal),
                   (1024 + 512) * tile_step_s(100) + 3 * 25 * partial_tile_s(g, cal));
}

TEST(GemmShapes, TheSplitIsTheFastestOne) {
  // Slow HBM: each extra slice's partial sums (25 tiles x 128 KiB) cost 4.1 us, more than a slice saves past two.
  auto cal = plain();
  auto g = gpu_with_sms(100);
  g.hbm_bytes_per_s = 1e12;
  EXPECT_DOUBLE_EQ(sim::gemm_math_seconds(gemm(128 * 5, 128 * 5, 4096), g, cal),
                   2048 * tile_step_s(100) + 25 * partial_tile_s(g, cal));
  // No slice is thinner than one 64-deep K stage: one tile of K = 256 makes four, not a hundred.
  g.hbm_bytes_per_s = 1e15;
  EXPECT_DOUBLE_EQ(sim::gemm_math_seconds(gemm(128, 128, 256), g, cal), 64 * tile_step_s(100) + 3 * partial_tile_s(g, cal));
}

TEST(GemmShapes, APartialTileCostsAWholeOne) {
  auto cal = plain();
  const auto g = gpu_with_sms(1);
  EXPECT_DOUBLE_EQ(sim::gemm_math_seconds(gemm(130, 128, 4096), g, cal), sim::gemm_math_seconds(gemm(256, 128, 4096), g, cal));
  EXPECT_DOUBLE_EQ(sim::gemm_math_seconds(gemm(256, 128, 4096), g, cal), 2 * 4096 * tile_step_s(1));
}
