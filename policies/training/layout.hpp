#pragma once
// The parallel layout of a training run: expert-parallel groups (contiguous blocks of `ep` ranks, each holding
// every expert once), expert-data-parallel groups (the ranks with the same index in every expert-parallel group,
// which hold replicas of the same experts), and the node / rail groups that ZeRO-3's hierarchical sharding uses.
#include <vector>

#include "core/runtime.hpp"
#include "policies/training/training_config.hpp"

namespace moesys::policies::training {

struct Layout {
  int world = 0;
  int ep = 0;   // expert-parallel group size
  int edp = 0;  // expert replicas (world / ep)
  int experts = 0;
  int local_experts = 0;  // experts per rank per MoE layer
  int gpus_per_node = 0;
  int node_ranks = 0;  // ranks per node in use (ZeRO-3 shard count): min(world, gpus_per_node)

  int ep_index(int rank) const { return rank % ep; }
  int ep_base(int rank) const { return rank - rank % ep; }
  /// The member of an expert-parallel group that owns `expert`.
  int owner(int expert) const { return expert / local_experts; }

  core::Group ep_group(int rank) const;
  core::Group edp_group(int rank) const;
  core::Group node_group(int rank) const;  // ranks on this rank's node
  core::Group rail_group(int rank) const;  // same local index on every node
};

/// Builds the layout; InfeasibleError when experts or ranks do not divide (with the numbers).
Layout make_layout(const TrainingConfig& c);

}  // namespace moesys::policies::training
