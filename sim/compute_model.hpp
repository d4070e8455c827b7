#pragma once
// Roofline time of a kernel on a GPU: the larger of its math time at the calibrated fraction of tensor-core peak
// and its memory time at the calibrated fraction of HBM bandwidth, plus a fixed launch cost. On a measured machine
// (GpuSpec::kernel_rates, CPU ranks) a listed kernel class takes its work at the measured rate instead.
#include "core/calibration.hpp"
#include "core/cluster.hpp"
#include "core/runtime.hpp"

namespace moesys::sim {

struct KernelCost {
  double seconds = 0;
  double hot_seconds = 0;  // on operands in its slot's cache (GpuSpec::kernel_hot_rates); = seconds where not measured
  double flop = 0;
  double bytes = 0;
};

/// Math time of a GEMM: 128 x 128 output tiles, one per SM at a time in waves, each K steps deep plus the tile's
/// fixed cost (Calibration::gemm_tile_overhead_k) at the dtype's calibrated fraction of tensor-core peak; fewer tiles
/// than SMs are split in K where that is faster, each slice paying the fixed cost and an fp32 partial sum through HBM.
/// Without SMs (GpuSpec::sms = 0) the flops at the efficiency, less for shallow K.
double gemm_math_seconds(const core::GemmOp& g, const core::GpuSpec& gpu, const core::Calibration& cal);
/// Fraction of tensor-core peak a GEMM reaches: its flops over peak x gemm_math_seconds.
double gemm_efficiency(const core::GemmOp& g, const core::GpuSpec& gpu, const core::Calibration& cal);
KernelCost kernel_cost(const core::Kernel& kernel, const core::GpuSpec& gpu, const core::Calibration& cal);

}  // namespace moesys::sim
