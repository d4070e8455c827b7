#pragma once
// What a compute slot's own cache holds, on measured machines (CPU ranks) whose kernel rates were taken both on
// operands out of every cache (cold) and on operands the previous call touched on that core (hot,
// GpuSpec::kernel_hot_rates). A kernel runs at a mix of the two by the share of its operands the cache of the slot
// it runs on holds: an expert GEMM right after the regroup that wrote its input runs near the hot rate, an
// optimizer step over parameters last touched a step ago at the cold one. GPUs (no hot rates) never use this.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <list>
#include <vector>

#include "core/runtime.hpp"

namespace moesys::sim {

/// A byte range [begin, end) of one rank's buffer (its allocation: views of it share the id).
struct Extent {
  int rank = 0;
  std::uint64_t id = 0;
  std::uint64_t begin = 0, end = 0;
  std::uint64_t bytes() const { return end - begin; }
};

/// A kernel's operands as disjoint extents (overlapping views of one allocation merged, an in-place operand once).
std::vector<Extent> operand_extents(const core::Kernel& kernel, int rank);

/// The most recently touched operand bytes up to a capacity (least recently used out first). Cache lines, sets
/// and the hardware's replacement order are not modelled: a kernel's operands are megabytes, lines 64 bytes.
class OperandCache {
public:
  explicit OperandCache(double capacity_bytes) : capacity_(std::floor(std::max(0.0, capacity_bytes))) {}
  /// The share of `extents` held now, of as much of them as the cache could hold (1 when all that fits is there).
  double held_share(const std::vector<Extent>& extents) const;
  /// A kernel ran on these operands: they are now the most recent (the last extent most of all), and older bytes
  /// leave beyond the capacity (of the oldest range, its start first: a kernel streams through a buffer from its
  /// start, so its end is what it touched last).
  void touch(const std::vector<Extent>& extents);
  double held_bytes() const { return held_; }
  /// Another agent (a copy, a collective) wrote these bytes: no slot's cache holds them any more.
  void forget(const std::vector<Extent>& extents);

private:
  void carve(const Extent& e);  // takes `e` out of the held ranges
  double capacity_;  // whole bytes: the held bytes always are
  std::list<Extent> recent_;  // most recent first, disjoint
  double held_ = 0;
};

/// The caches of one node's compute slots. A kernel runs on the free slot its rank ran on last (the scheduler
/// keeps a thread on its core), else on the free slot released longest ago; at most as many kernels run at once
/// as there are slots (the node's semaphore sees to it).
class SlotCaches {
public:
  SlotCaches(int slots, double capacity_bytes);
  OperandCache& take(int rank);
  void give(const OperandCache& cache);
  void forget(const std::vector<Extent>& extents);  // from every slot's cache

private:
  struct Slot {
    OperandCache cache;
    bool busy = false;
    int last_rank = -1;
    std::uint64_t released = 0;  // order of release, 0 = never used
  };
  std::vector<Slot> slots_;
  std::uint64_t releases_ = 0;
};

}  // namespace moesys::sim
