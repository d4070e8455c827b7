#pragma once
// Kernel classes: kernels that run the same code at different sizes. A machine described by measurement (CPU
// ranks, whose memory-bound kernels differ in cost per byte by 10x: an exp per element in a softmax, a copy in a
// GeLU) has one measured rate per class instead of a roofline; see GpuSpec::kernel_rates.
#include <string>
#include <type_traits>
#include <vector>

#include "core/runtime.hpp"

namespace moesys::core {

/// "gemm NT batched", "gemm NN broadcast", "attention bwd", "gelu", ... (GEMMs by transposition, batching and
/// accumulation; attention by direction; tensor ops by kind; size-only ops by their variant).
std::string kernel_class(const Kernel& kernel);

/// The amount the class's rate is per second of: floating-point operations for GEMMs and attention, bytes read
/// and written for everything else.
double kernel_work(const Kernel& kernel);

/// Every buffer slot a kernel reads or writes (unset ones included, `if (*b)` to skip them), in a fixed order per
/// kind. `KernelRef` is Kernel or const Kernel: the pointers are mutable or const to match.
template <typename KernelRef>
auto kernel_operands(KernelRef& kernel) {
  using B = std::conditional_t<std::is_const_v<KernelRef>, const Buffer, Buffer>;
  std::vector<B*> list;
  std::visit(
      [&list](auto& op) {
        using Op = std::decay_t<decltype(op)>;
        if constexpr (std::is_same_v<Op, GemmOp>) {
          list = {&op.a, &op.b, &op.c};
        } else if constexpr (std::is_same_v<Op, AttentionOp>) {
          list = {&op.q, &op.k, &op.v, &op.o, &op.d_o, &op.d_q, &op.d_k, &op.d_v};
        } else if constexpr (std::is_same_v<Op, TensorOp>) {
          for (auto* v : {&op.in, &op.out})
            for (auto& b : *v) list.push_back(&b);
        }
      },
      kernel);
  return list;
}

}  // namespace moesys::core
