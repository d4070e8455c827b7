#include "sim/compute_model.hpp"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "core/kernel_class.hpp"

namespace moesys::sim {

namespace {
constexpr double kGemmTile = 128;  // output tile edge of cuBLAS's and CUTLASS's large tensor-core kernels
double peak_or_fp32(const core::GpuSpec& gpu, core::Dtype d) {
  auto it = gpu.peak_flop_per_s.find(d);
  if (it != gpu.peak_flop_per_s.end()) return it->second;
  return gpu.peak(core::Dtype::fp32);
}
}  // namespace

double gemm_efficiency(const core::GemmOp& g, const core::GpuSpec& gpu, const core::Calibration& cal) {
  double e = g.dtype == core::Dtype::fp8 ? cal.gemm_fp8_efficiency : cal.gemm_efficiency;
  const double k = static_cast<double>(g.k);
  if (cal.gemm_tile_overhead_k > 0 && k > 0) e *= k / (k + cal.gemm_tile_overhead_k);
  if (gpu.sms > 0) {
    // One output tile per SM at a time: the last wave may leave SMs idle. Fewer tiles than SMs do not leave the
    // machine idle: libraries split K (split-K, stream-K) to give every SM work.
    const double tiles = std::ceil(static_cast<double>(g.m) / kGemmTile) *
                         std::ceil(static_cast<double>(g.n) / kGemmTile) * static_cast<double>(g.batch);
    const double waves = std::ceil(tiles / gpu.sms);
    if (tiles > gpu.sms) e *= tiles / (waves * gpu.sms);
  }
  return e;
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
  double efficiency = cal.gemm_efficiency;
  if (const auto* g = std::get_if<core::GemmOp>(&kernel)) efficiency = gemm_efficiency(*g, gpu, cal);
  const double math_s = math_rate > 0 ? c.flop / (math_rate * efficiency) : 0;
  const double mem_s = c.bytes / (gpu.hbm_bytes_per_s * cal.hbm_efficiency);
  c.seconds = std::max(math_s, mem_s) + cal.kernel_launch_s;
  c.hot_seconds = c.seconds;
  return c;
}

}  // namespace moesys::sim
