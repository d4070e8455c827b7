#include "policies/training/lfu_cache.hpp"

namespace moesys::policies::training {

LfuCache::LfuCache(std::int64_t capacity_entries, CacheSettings settings)
    : capacity_(capacity_entries < 0 ? 0 : capacity_entries), settings_(settings) {}

double LfuCache::hits(std::int64_t key) const {
  auto it = counts_.find(key);
  return it == counts_.end() ? 0.0 : it->second;
}

LfuCache::Access LfuCache::access(std::int64_t key) {
  Access a;
  const double count = (counts_[key] += 1.0);
  if (cached_.count(key)) {
    a.hit = true;
    return a;
  }
  if (capacity_ == 0) return a;
  if (static_cast<std::int64_t>(cached_.size()) < capacity_) {
    cached_.insert(key);
    a.admitted = true;
    return a;
  }
  if (count < settings_.hit_threshold) return a;
  std::int64_t victim = *cached_.begin();
  for (std::int64_t k : cached_)
    if (counts_[k] < counts_[victim]) victim = k;  // strict: ties keep the lower key
  if (counts_[victim] >= count) return a;
  cached_.erase(victim);
  cached_.insert(key);
  a.admitted = true;
  a.evicted = victim;
  return a;
}

void LfuCache::end_step() {
  if (++steps_ % settings_.decay_every_steps != 0) return;
  for (auto& [k, v] : counts_) v *= settings_.decay_beta;
}

}  // namespace moesys::policies::training
