#pragma once
// Per-rank memory accounting for the three tiers: capacity checks, current use, peak, and use by tag.
// Shared by every runtime so that simulated and real runs report memory the same way.
#include <array>
#include <cstdint>
#include <map>
#include <string>

#include "core/error.hpp"

namespace moesys::core {

enum class Tier { hbm = 0, dram = 1, ssd = 2 };
inline constexpr int kTierCount = 3;
const char* to_string(Tier t);

/// Allocation beyond a tier's capacity. The message carries the numbers (tier, request, in use, capacity).
class OutOfMemory : public RuntimeFailure {
public:
  using RuntimeFailure::RuntimeFailure;
};

class MemoryLedger {
public:
  /// capacities in bytes; a capacity of 0 means the tier does not exist.
  MemoryLedger(double hbm_bytes, double dram_bytes, double ssd_bytes);

  /// Records an allocation; throws OutOfMemory if it does not fit.
  void allocate(Tier t, std::uint64_t bytes, const std::string& tag);
  void release(Tier t, std::uint64_t bytes, const std::string& tag);

  double capacity_bytes(Tier t) const { return capacity_[idx(t)]; }
  std::uint64_t in_use_bytes(Tier t) const { return in_use_[idx(t)]; }
  std::uint64_t peak_bytes(Tier t) const { return peak_[idx(t)]; }
  /// Bytes in use per tag at the moment the tier reached its peak.
  const std::map<std::string, std::uint64_t>& peak_by_tag(Tier t) const { return peak_by_tag_[idx(t)]; }

private:
  static std::size_t idx(Tier t) { return static_cast<std::size_t>(t); }
  std::array<double, kTierCount> capacity_{};
  std::array<std::uint64_t, kTierCount> in_use_{}, peak_{};
  std::array<std::map<std::string, std::uint64_t>, kTierCount> by_tag_, peak_by_tag_;
};

}  // namespace moesys::core
