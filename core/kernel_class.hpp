#pragma once
// Kernel classes: kernels that run the same code at different sizes. A machine described by measurement (CPU
// ranks, whose memory-bound kernels differ in cost per byte by 10x: an exp per element in a softmax, a copy in a
// GeLU) has one measured rate per class instead of a roofline; see GpuSpec::kernel_rates.
#include <string>

#include "core/runtime.hpp"

namespace moesys::core {

/// "gemm NT batched", "gemm NN broadcast", "attention bwd", "gelu", ... (GEMMs by transposition, batching and
/// accumulation; attention by direction; tensor ops by kind; size-only ops by their variant).
std::string kernel_class(const Kernel& kernel);

/// The amount the class's rate is per second of: floating-point operations for GEMMs and attention, bytes read
/// and written for everything else.
double kernel_work(const Kernel& kernel);

}  // namespace moesys::core
