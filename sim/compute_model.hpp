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

/// Fraction of tensor-core peak a GEMM reaches: the dtype's calibrated efficiency, less for shallow K (the tile's
/// fixed cost) and for a partial last wave of tiles (beyond the first wave: fewer tiles than SMs are split in K).
double gemm_efficiency(const core::GemmOp& g, const core::GpuSpec& gpu, const core::Calibration& cal);
KernelCost kernel_cost(const core::Kernel& kernel, const core::GpuSpec& gpu, const core::Calibration& cal);

}  // namespace moesys::sim
