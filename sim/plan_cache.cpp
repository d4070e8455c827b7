#include "sim/plan_cache.hpp"

#include <bit>
#include <cstring>

namespace moesys::sim {

namespace {
// Beyond this, the cache starts over: a study with ever-changing routing must not grow without bound.
constexpr std::size_t kMaxHeldBytes = std::size_t{256} << 20;

std::uint64_t mix(std::uint64_t h, std::uint64_t v) {
  return (h ^ v) * 0x100000001b3ull;
}
}  // namespace

std::uint64_t PlanCache::hash_of(int group, const CollectiveCall& call, core::CollectiveAlgo algo) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  h = mix(h, static_cast<std::uint64_t>(call.op));
  h = mix(h, static_cast<std::uint64_t>(algo));
  h = mix(h, static_cast<std::uint64_t>(group));
  h = mix(h, std::bit_cast<std::uint64_t>(call.bytes));
  for (const auto& row : call.matrix)
    for (double b : row) h = mix(h, std::bit_cast<std::uint64_t>(b));
  return h;
}

bool PlanCache::same(const Entry& e, int group, const CollectiveCall& call, core::CollectiveAlgo algo) {
  // Sizes compare bit for bit: equal bits plan equally.
  return e.op == call.op && e.algo == algo && e.group == group &&
         std::bit_cast<std::uint64_t>(e.bytes) == std::bit_cast<std::uint64_t>(call.bytes) && e.matrix == call.matrix;
}

std::shared_ptr<const CollectivePlan> PlanCache::plan(const core::ClusterSpec& spec, const core::Calibration& cal,
                                                      int group, const CollectiveCall& call, core::CollectiveAlgo algo,
                                                      bool& reused) {
  reused = false;
  if (group < 0) return std::make_shared<const CollectivePlan>(plan_collective(spec, cal, call, algo));
  const std::uint64_t h = hash_of(group, call, algo);
  auto [first, last] = entries_.equal_range(h);
  for (auto it = first; it != last; ++it)
    if (same(it->second, group, call, algo)) {
      reused = true;
      return it->second.plan;
    }
  auto plan = std::make_shared<const CollectivePlan>(plan_collective(spec, cal, call, algo));
  std::size_t bytes = sizeof(Entry);
  for (const auto& row : call.matrix) bytes += row.size() * sizeof(double);
  for (const Stage& s : *plan) bytes += s.held_bytes();
  if (bytes > kMaxHeldBytes) return plan;  // larger than the whole cache (an 8192-member all-to-all): not kept
  if (held_bytes_ + bytes > kMaxHeldBytes) {
    entries_.clear();
    held_bytes_ = 0;
  }
  held_bytes_ += bytes;
  entries_.emplace(h, Entry{call.op, algo, group, call.bytes, call.matrix, plan});
  return plan;
}

}  // namespace moesys::sim
