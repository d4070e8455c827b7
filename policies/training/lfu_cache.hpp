#pragma once
// The CPU cache of expert states in MoESys's hierarchical storage (paper-notes "2D prefetch"): an LFU-like cache
// with a hit-count table. Every access counts a hit for the expert. On a miss with a free entry the expert is
// admitted; on a miss with a full cache the expert is admitted only if its hit count has reached the hit
// threshold and exceeds that of the cached entry with the lowest count, which is evicted (its states are written
// back to the SSD). Every `decay_every` steps all counts are multiplied by beta, so that old popularity fades.
// Ties between entries with equal counts go to the lower key, which keeps runs deterministic.
#include <cstdint>
#include <map>
#include <optional>
#include <set>

#include "policies/training/policy.hpp"

namespace moesys::policies::training {

class LfuCache {
 public:
  LfuCache(std::int64_t capacity_entries, CacheSettings settings);

  struct Access {
    bool hit = false;                     // the expert's states were in the cache
    bool admitted = false;                // a miss that now occupies an entry
    std::optional<std::int64_t> evicted;  // the entry written back to make room
  };
  /// Records an access to `key` (e.g. layer * experts + expert) and updates the cache.
  Access access(std::int64_t key);
  /// Call once at the end of every training step; applies the decay every `decay_every_steps` steps.
  void end_step();

  bool contains(std::int64_t key) const { return cached_.count(key) != 0; }
  double hits(std::int64_t key) const;
  std::int64_t size() const { return static_cast<std::int64_t>(cached_.size()); }
  std::int64_t capacity() const { return capacity_; }

 private:
  std::int64_t capacity_;
  CacheSettings settings_;
  std::map<std::int64_t, double> counts_;  // hit-count table (every expert seen)
  std::set<std::int64_t> cached_;
  int steps_ = 0;
};

}  // namespace moesys::policies::training
