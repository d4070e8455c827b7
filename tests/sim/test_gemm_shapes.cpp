// GEMM efficiency by shape and dtype against closed forms: the fp8 efficiency, the tile's fixed cost in K and the
// partial last wave of tiles.
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
  core::Calibration cal;
  cal.gemm_efficiency = 0.9;
  cal.gemm_fp8_efficiency = 0.7;
  const auto g = gpu_with_sms(0);
  EXPECT_DOUBLE_EQ(sim::gemm_efficiency(gemm(4096, 4096, 4096), g, cal), 0.9);
  EXPECT_DOUBLE_EQ(sim::gemm_efficiency(gemm(4096, 4096, 4096, core::Dtype::fp8), g, cal), 0.7);
}

TEST(GemmShapes, ShallowKPaysTheTileOverhead) {
  core::Calibration cal;
  cal.gemm_efficiency = 0.9;
  cal.gemm_tile_overhead_k = 512;
  const auto g = gpu_with_sms(0);
  EXPECT_DOUBLE_EQ(sim::gemm_efficiency(gemm(4096, 4096, 512), g, cal), 0.9 * 0.5);
  EXPECT_DOUBLE_EQ(sim::gemm_efficiency(gemm(4096, 4096, 1536), g, cal), 0.9 * 0.75);
}

TEST(GemmShapes, APartialLastWaveIdlesSms) {
  core::Calibration cal;
  cal.gemm_efficiency = 1;
  const auto g = gpu_with_sms(100);
  // 100 tiles: one full wave; 101 tiles: two waves, the second with one tile; 30 tiles are split in K.
  EXPECT_DOUBLE_EQ(sim::gemm_efficiency(gemm(128 * 10, 128 * 10, 4096), g, cal), 1.0);
  EXPECT_DOUBLE_EQ(sim::gemm_efficiency(gemm(128 * 3, 128 * 10, 4096), g, cal), 1.0);
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
