#pragma once
// Plans of collectives already run, reused when a collective is identical: same operation, same group (same
// members in the same order), same algorithm and same sizes (the nccl-tests size, or every entry of the
// all-to-all matrix). A plan is a pure function of those and of the cluster, so a reused plan is exactly the
// plan that planning again would give; the simulated time cannot change.
//
// Training repeats the same collectives every layer and micro-batch (gradient buckets, parameter gathers,
// balanced all-to-alls), and planning a ring over 1024 GPUs or a hierarchical all-to-all costs far more than
// comparing sizes.
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "core/cluster.hpp"
#include "sim/collectives.hpp"

namespace moesys::sim {

class PlanCache {
 public:
  /// The plan of `call` run with `algo` (the calibration is the simulation's, fixed for the cache's life); `group` is
  /// the interned id of the call's members (-1: not cached). Sets `reused` when the plan came from the cache.
  std::shared_ptr<const CollectivePlan> plan(const core::ClusterSpec& spec, const core::Calibration& cal, int group,
                                             const CollectiveCall& call, core::CollectiveAlgo algo, bool& reused);

 private:
  struct Entry {
    CollectiveOp op;
    core::CollectiveAlgo algo;
    int group;
    double bytes;
    std::vector<std::vector<double>> matrix;
    std::shared_ptr<const CollectivePlan> plan;
  };
  static std::uint64_t hash_of(int group, const CollectiveCall& call, core::CollectiveAlgo algo);
  static bool same(const Entry& e, int group, const CollectiveCall& call, core::CollectiveAlgo algo);

  std::unordered_multimap<std::uint64_t, Entry> entries_;
  std::size_t held_bytes_ = 0;  // rough size of the stored matrices and plans, to bound the cache
};

}  // namespace moesys::sim
