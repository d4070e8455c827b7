#include "sim/compute_model.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "core/kernel_class.hpp"

namespace moesys::sim {

namespace {
constexpr double kGemmTile = 128;   // output tile edge of cuBLAS's and CUTLASS's large tensor-core kernels
constexpr double kMinSliceK = 64;   // K depth of one pipeline stage of such a tile: the thinnest K slice worth making
double peak_or_fp32(const core::GpuSpec& gpu, core::Dtype d) {
  auto it = gpu.peak_flop_per_s.find(d);
  if (it != gpu.peak_flop_per_s.end()) return it->second;
  return gpu.peak(core::Dtype::fp32);
}
}  // namespace

double gemm_math_seconds(const core::GemmOp& g, const core::GpuSpec& gpu, const core::Calibration& cal) {
  const double efficiency = g.dtype == core::Dtype::fp8 ? cal.gemm_fp8_efficiency : cal.gemm_efficiency;
  const double rate = peak_or_fp32(gpu, g.dtype) * efficiency;
  if (rate <= 0) return 0;
  const double k = static_cast<double>(g.k), k0 = std::max(0.0, cal.gemm_tile_overhead_k);
  if (gpu.sms <= 0 || k <= 0) return g.flop() / (rate * (k > 0 ? k / (k + k0) : 1));
  // One output tile per SM at a time, K steps plus the tile's fixed cost (k0) each, in waves over the SMs.
  const double sms = gpu.sms;
  const double tiles = std::ceil(static_cast<double>(g.m) / kGemmTile) *
                       std::ceil(static_cast<double>(g.n) / kGemmTile) * static_cast<double>(g.batch);
  if (tiles <= 0) return 0;
  const double tile_step_s = 2 * kGemmTile * kGemmTile / (rate / sms);  // one K step of one tile on one SM
  const double partial_tile_bytes = kGemmTile * kGemmTile * core::dtype_bytes(core::Dtype::fp32);
  const double hbm = gpu.hbm_bytes_per_s * cal.hbm_efficiency;
  // Fewer tiles than SMs: the library splits K into s slices (split-K, stream-K) so that more SMs work, each slice
  // paying the tile's fixed cost again and its fp32 partial tile written and read back for the sum. It picks the
  // fastest s that keeps one wave; slices shallower than one K block of a tile are not made.
  const int most_slices = tiles < sms ? static_cast<int>(sms / tiles) : 1;
  double best = std::numeric_limits<double>::infinity();
  for (int s = 1; s <= most_slices; ++s) {
    const double slice_k = std::ceil(k / s);
    if (s > 1 && slice_k < kMinSliceK) break;
    const double waves = std::ceil(tiles * s / sms);
    const double reduce_s = hbm > 0 ? (s - 1) * tiles * partial_tile_bytes * 2 / hbm : 0;
    best = std::min(best, waves * (slice_k + k0) * tile_step_s + reduce_s);
  }
  return best;
}

double gemm_efficiency(const core::GemmOp& g, const core::GpuSpec& gpu, const core::Calibration& cal) {
  const double seconds = gemm_math_seconds(g, gpu, cal);
  const double peak = peak_or_fp32(gpu, g.dtype);
  return seconds > 0 && peak > 0 ? g.flop() / (peak * seconds) : 0;
}

KernelCost kernel_cost(const core::Kernel& kernel, const core::GpuSpec& gpu, const core::Calibration& cal) {
  KernelCost c;
  double math_rate = 0;
  std::visit(
      [&](const auto& k) {
        using K = std::decay_t<decltype(k)>;
        if constexpr (std::is_same_v<K, core::GemmOp>) {
          c.flop = k.flop();
          const double inputs = static_cast<double>(k.m) * k.k + static_cast<double>(k.k) * k.n;
          const double outputs = static_cast<double>(k.m) * k.n * (k.accumulate ? 2 : 1);
          // FP8 GEMMs write (and accumulate into) bf16: their scaled products are not stored back in fp8 (DeepGEMM,
          // Transformer Engine).
          const double out_bytes = k.dtype == core::Dtype::fp8 ? core::dtype_bytes(core::Dtype::bf16)
                                                               : core::dtype_bytes(k.dtype);
          c.bytes = (inputs * core::dtype_bytes(k.dtype) + outputs * out_bytes) * k.batch;
          math_rate = peak_or_fp32(gpu, k.dtype);
        } else if constexpr (std::is_same_v<K, core::AttentionOp>) {
          c.flop = k.flop();
          c.bytes = k.bytes();
          math_rate = peak_or_fp32(gpu, k.dtype);
        } else if constexpr (std::is_same_v<K, core::TensorOp>) {
          c.flop = k.flop;
          c.bytes = static_cast<double>(k.bytes_read + k.bytes_written);
          math_rate = gpu.peak(core::Dtype::fp32);
        } else if constexpr (std::is_same_v<K, core::ElementwiseOp>) {
          c.flop = k.flop;
          c.bytes = static_cast<double>(k.bytes_read + k.bytes_written);
          math_rate = gpu.peak(core::Dtype::fp32);  // CUDA cores, no tensor cores
        } else {
          c.flop = k.flop();
          c.bytes = k.bytes();
          math_rate = gpu.peak(core::Dtype::fp32);
        }
      },
      kernel);
  const auto it = gpu.kernel_rates.empty() ? gpu.kernel_rates.end() : gpu.kernel_rates.find(core::kernel_class(kernel));
  if (it != gpu.kernel_rates.end()) {
    // A measured machine: the class's measured rate, plus the runtime's fixed cost per kernel.
    const double work = core::kernel_work(kernel);
    c.seconds = work / core::rate_at(it->second, work) + cal.kernel_launch_s;
    const auto hot = gpu.kernel_hot_rates.find(it->first);
    c.hot_seconds = hot == gpu.kernel_hot_rates.end() ? c.seconds
                                                      : work / core::rate_at(hot->second, work) + cal.kernel_launch_s;
    return c;
  }
  double math_s = math_rate > 0 ? c.flop / (math_rate * cal.gemm_efficiency) : 0;
  if (const auto* g = std::get_if<core::GemmOp>(&kernel)) math_s = gemm_math_seconds(*g, gpu, cal);
  const double mem_s = c.bytes / (gpu.hbm_bytes_per_s * cal.hbm_efficiency);
  c.seconds = std::max(math_s, mem_s) + cal.kernel_launch_s;
  c.hot_seconds = c.seconds;
  return c;
}

}  // namespace moesys::sim
