#include "sim/operand_cache.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "core/kernel_class.hpp"

namespace moesys::sim {

std::vector<Extent> operand_extents(const core::Kernel& kernel, int rank) {
  std::vector<Extent> extents;
  for (const core::Buffer* b : core::kernel_operands(kernel))
    if (*b && b->bytes) extents.push_back({rank, b->id, b->offset, b->offset + b->bytes});
  // Merge overlapping or touching ranges of one allocation. Each operand absorbs every earlier range it meets
  // (one can bridge two) and takes the latest place, so outputs stay last: the most recent.
  std::vector<Extent> merged;
  for (Extent e : extents) {
    for (auto it = merged.begin(); it != merged.end();)
      if (it->id == e.id && e.begin <= it->end && it->begin <= e.end) {
        e.begin = std::min(e.begin, it->begin), e.end = std::max(e.end, it->end);
        it = merged.erase(it);
      } else {
        ++it;
      }
    merged.push_back(e);
  }
  return merged;
}

namespace {
std::uint64_t overlap(const Extent& a, const Extent& b) {
  if (a.rank != b.rank || a.id != b.id) return 0;
  const std::uint64_t lo = std::max(a.begin, b.begin), hi = std::min(a.end, b.end);
  return hi > lo ? hi - lo : 0;
}
}  // namespace

double OperandCache::held_share(const std::vector<Extent>& extents) const {
  double total = 0, held = 0;
  for (const Extent& e : extents) {
    total += static_cast<double>(e.bytes());
    for (const Extent& r : recent_) held += static_cast<double>(overlap(e, r));
  }
  const double could = std::min(total, capacity_);
  return could > 0 ? std::min(1.0, held / could) : 0.0;
}

void OperandCache::carve(const Extent& e) {
  for (auto it = recent_.begin(); it != recent_.end();) {
    const std::uint64_t o = overlap(e, *it);
    if (o == 0) {
      ++it;
      continue;
    }
    held_ -= static_cast<double>(o);
    const Extent old = *it;  // what is left of it on either side stays where it was in the order
    it = recent_.erase(it);
    if (old.begin < e.begin) recent_.insert(it, Extent{old.rank, old.id, old.begin, e.begin});
    if (e.end < old.end) recent_.insert(it, Extent{old.rank, old.id, e.end, old.end});
  }
}

void OperandCache::forget(const std::vector<Extent>& extents) {
  for (const Extent& e : extents) carve(e);
}

void OperandCache::touch(const std::vector<Extent>& extents) {
  for (const Extent& e : extents) {
    carve(e);  // out of older entries (splitting one that holds it in its middle), then in front
    recent_.push_front(e);
    held_ += static_cast<double>(e.bytes());
  }
  while (held_ > capacity_ && !recent_.empty()) {
    Extent& oldest = recent_.back();
    const double excess = held_ - capacity_;
    if (static_cast<double>(oldest.bytes()) <= excess) {
      held_ -= static_cast<double>(oldest.bytes());
      recent_.pop_back();
    } else {
      const auto cut = static_cast<std::uint64_t>(std::ceil(excess));
      oldest.begin += cut;
      held_ -= static_cast<double>(cut);
    }
  }
}

SlotCaches::SlotCaches(int slots, double capacity_bytes)
    : slots_(static_cast<std::size_t>(std::max(1, slots)), Slot{OperandCache(capacity_bytes)}) {}

OperandCache& SlotCaches::take(int rank) {
  Slot* pick = nullptr;
  for (Slot& s : slots_) {
    if (s.busy) continue;
    if (s.last_rank == rank) {
      pick = &s;
      break;
    }
    if (!pick || s.released < pick->released) pick = &s;
  }
  if (!pick) throw std::logic_error("SlotCaches::take: more kernels at once than compute slots");
  pick->busy = true;
  pick->last_rank = rank;
  return pick->cache;
}

void SlotCaches::forget(const std::vector<Extent>& extents) {
  for (Slot& s : slots_) s.cache.forget(extents);
}

void SlotCaches::give(const OperandCache& cache) {
  for (Slot& s : slots_)
    if (&s.cache == &cache) {
      s.busy = false;
      s.released = ++releases_;
      return;
    }
  throw std::logic_error("SlotCaches::give: not one of this node's caches");
}

}  // namespace moesys::sim
