#pragma once
// Host implementations of every core::Kernel with real operands (fp32): GEMMs through CBLAS, attention as
// per-head GEMMs, and the MoE data kernels of model/ops.hpp as plain loops.
#include "core/runtime.hpp"

namespace moesys::exec::cpu {

/// Runs the kernel on host memory. Throws std::invalid_argument for a kernel without operands or in a dtype
/// other than fp32 (the CPU runtime computes in fp32 only).
void run_kernel(const core::Kernel& kernel);

}  // namespace moesys::exec::cpu
