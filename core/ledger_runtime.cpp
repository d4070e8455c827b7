#include "core/ledger_runtime.hpp"

#include <stdexcept>

namespace moesys::core {

namespace {
constexpr double kUnlimited = 1e30;  // bytes: the plan compares peaks with the real capacities afterwards
}

LedgerRuntime::LedgerRuntime(const ClusterSpec& spec, int rank, int world_size)
    : spec_(spec), rank_(rank), world_(world_size), ledger_(kUnlimited, kUnlimited, kUnlimited) {}

Buffer LedgerRuntime::alloc(Tier tier, std::uint64_t bytes, const std::string& tag) {
  ledger_.allocate(tier, bytes, tag);
  tags_.push_back(tag);
  return Buffer{tags_.size(), tier, bytes, nullptr};
}

void LedgerRuntime::free(Buffer& buffer) {
  if (!buffer) return;
  if (buffer.id > tags_.size()) throw std::invalid_argument("free of a buffer this runtime did not allocate");
  ledger_.release(buffer.tier, buffer.bytes, tags_[buffer.id - 1]);
  buffer = Buffer{};
}

}  // namespace moesys::core
