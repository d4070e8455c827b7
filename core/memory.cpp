#include "core/memory.hpp"

#include <cstdio>

#include "core/units.hpp"

namespace moesys::core {

const char* to_string(Tier t) {
  switch (t) {
    case Tier::hbm: return "hbm";
    case Tier::dram: return "dram";
    case Tier::ssd: return "ssd";
  }
  return "?";
}

MemoryLedger::MemoryLedger(double hbm_bytes, double dram_bytes, double ssd_bytes)
    : capacity_{hbm_bytes, dram_bytes, ssd_bytes} {}

void MemoryLedger::allocate(Tier t, std::uint64_t bytes, const std::string& tag) {
  const auto i = idx(t);
  if (static_cast<double>(in_use_[i] + bytes) > capacity_[i]) {
    char msg[256];
    std::snprintf(msg, sizeof msg, "out of %s memory: allocating %.2f GiB for '%s' with %.2f GiB in use, capacity %.2f GiB",
                  to_string(t), static_cast<double>(bytes) / kGiB, tag.c_str(),
                  static_cast<double>(in_use_[i]) / kGiB, capacity_[i] / kGiB);
    throw OutOfMemory(msg);
  }
  in_use_[i] += bytes;
  by_tag_[i][tag] += bytes;
  if (in_use_[i] > peak_[i]) {
    peak_[i] = in_use_[i];
    peak_by_tag_[i] = by_tag_[i];
  }
}

void MemoryLedger::release(Tier t, std::uint64_t bytes, const std::string& tag) {
  const auto i = idx(t);
  in_use_[i] -= bytes > in_use_[i] ? in_use_[i] : bytes;
  auto it = by_tag_[i].find(tag);
  if (it != by_tag_[i].end()) {
    it->second -= bytes > it->second ? it->second : bytes;
    if (it->second == 0) by_tag_[i].erase(it);
  }
}

}  // namespace moesys::core
