#include "core/kernel_class.hpp"

#include <type_traits>

namespace moesys::core {

std::string kernel_class(const Kernel& kernel) {
  return std::visit(
      [](const auto& k) -> std::string {
        using K = std::decay_t<decltype(k)>;
        if constexpr (std::is_same_v<K, GemmOp>) {
          std::string c = "gemm ";
          c += k.trans_a ? 'T' : 'N';
          c += k.trans_b ? 'T' : 'N';
          if (k.batch > 1) c += k.broadcast_a ? " broadcast" : " batched";
          if (k.accumulate) c += " accumulate";
          return c;
        } else if constexpr (std::is_same_v<K, AttentionOp>) {
          return k.backward ? "attention bwd" : "attention";
        } else if constexpr (std::is_same_v<K, TensorOp>) {
          return to_string(k.kind);
        } else if constexpr (std::is_same_v<K, ElementwiseOp>) {
          return "elementwise";
        } else {
          return "gate";
        }
      },
      kernel);
}

double kernel_work(const Kernel& kernel) {
  return std::visit(
      [](const auto& k) -> double {
        using K = std::decay_t<decltype(k)>;
        if constexpr (std::is_same_v<K, GemmOp> || std::is_same_v<K, AttentionOp>) {
          return k.flop();
        } else if constexpr (std::is_same_v<K, TensorOp> || std::is_same_v<K, ElementwiseOp>) {
          return static_cast<double>(k.bytes_read + k.bytes_written);
        } else {
          return k.bytes();
        }
      },
      kernel);
}

}  // namespace moesys::core
