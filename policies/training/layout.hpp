#pragma once
// The parallel layout of a training run. Pipeline stages are contiguous blocks of `world` ranks (stage s holds ranks
// [s * world, (s + 1) * world) and a contiguous range of layers); everything else is laid out inside a stage, as if
// the stage were the whole run: expert-parallel groups (contiguous blocks of `ep` ranks, each holding every expert
// once), expert-data-parallel groups (the ranks with the same index in every expert-parallel group, which hold
// replicas of the same experts), the stage's data-parallel group (its `world` ranks, which hold replicas of the
// stage's dense layers) and the node / rail groups that ZeRO-3's hierarchical sharding uses.
// Tensor parallelism cuts a stage's ranks into tensor-parallel groups of `tp` contiguous ranks (inside one node, as
// Megatron places them): they hold one shard each of every attention and dense FFN weight and one sequence shard
// each of every micro-batch (sequence parallelism). The dense weights' data-parallel group is then the ranks with the
// same tensor-parallel index (stride tp); expert-parallel groups fold over all of the stage's ranks as before (each
// rank routes its own sequence shard).
// Context parallelism cuts every sequence into `cp` contiguous chunks: the ranks of a tensor-parallel group hold one
// chunk of each sequence of their replica's micro-batches, and `cp` such groups (stride tp) hold the chunks of the
// same sequences; attention gathers the keys and values of the whole sequence over the context-parallel group and
// reduce-scatters their gradients back. The dense weights' data-parallel group (stride tp) spans them too.
// Expert tensor parallelism splits every routed expert's FFN width over `etp` ranks: an expert group is then `ep` x
// `etp` contiguous ranks, member q x etp + s holding shard s of the experts of expert-parallel index q; the
// all-gather dispatcher gathers the whole group's tokens and its reduce-scatter sums the shards' partial outputs.
// Ranks come in two numberings: global (the runtime's rank, what groups hold) and local (rank - stage base, what the
// routing plan indexes; the ranks with the same local index in every stage process the same micro-batches).
#include <vector>

#include "core/runtime.hpp"
#include "policies/training/training_config.hpp"

namespace moesys::policies::training {

struct Layout {
  int ranks = 0;  // all ranks of the run: world x pp
  int pp = 1;     // pipeline stages
  int vpp = 1;    // model chunks per stage (virtual stages)
  int world = 0;  // ranks of one stage (tp x its data-parallel size)
  int tp = 1;     // tensor (and sequence) parallel size
  int cp = 1;     // context-parallel size: chunks of every sequence
  int dp() const { return world / tp; }  // data-parallel size of the dense weights (context-parallel ranks included)
  int batch_replicas() const { return world / (tp * cp); }  // rank groups that draw different micro-batches
  /// [pp x vpp + 1]: model chunk k runs layers [first[k], first[k + 1]); chunk v of stage s is chunk v x pp + s.
  std::vector<int> chunk_first_layer;
  int ep = 0;   // expert-parallel size: members of an expert group that hold different experts
  int etp = 1;  // expert-tensor-parallel size: ranks that hold a shard each of the same experts
  int edp = 0;  // expert replicas (world / (ep x etp))
  int expert_group() const { return ep * etp; }  // contiguous ranks that hold every expert once
  int experts = 0;
  int local_experts = 0;  // experts per rank per MoE layer
  int replica_slots = 0;  // spare expert slots per rank per MoE layer (copies of other ranks' experts)
  int expert_slots() const { return local_experts + replica_slots; }
  int gpus_per_node = 0;
  int node_ranks = 0;  // ranks per node in use (ZeRO-3 shard count): min(world, gpus_per_node)

  int stage(int rank) const { return rank / world; }
  int local(int rank) const { return rank % world; }
  int chunks() const { return pp * vpp; }
  int chunk_of_layer(int layer) const;
  int stage_of_layer(int layer) const { return chunk_of_layer(layer) % pp; }
  int tp_index(int rank) const { return rank % tp; }
  int replica_index(int rank) const { return local(rank) / (tp * cp); }  // which micro-batches the rank draws
  int cp_index(int rank) const { return local(rank) / tp % cp; }          // which chunk of each sequence
  int ep_index(int rank) const { return rank % expert_group() / etp; }
  int etp_index(int rank) const { return rank % etp; }
  int ep_base(int rank) const { return rank - rank % expert_group(); }
  /// Consecutive members of every expert-parallel group that share a node (min(ep, GPUs per node)), or 0 when
  /// some group's members do not split into whole node groups that way.
  int ep_members_per_node() const;
  /// The member of an expert-parallel group that owns `expert`.
  int owner(int expert) const { return expert / local_experts; }

  // Groups of a global rank, in global ranks.
  core::Group dp_group(int rank) const;  // the ranks of this rank's stage with its tensor-parallel index
  core::Group tp_group(int rank) const;  // this rank's tensor-parallel group
  core::Group cp_group(int rank) const;  // the ranks holding the other chunks of this rank's sequences
  core::Group ep_group(int rank) const;  // this rank's expert group (ep x etp ranks)
  core::Group edp_group(int rank) const;
  core::Group node_group(int rank) const;  // ranks on this rank's node
  core::Group rail_group(int rank) const;  // same local index on every node
  /// A tied token table with pipeline stages: the first and the last stage's ranks of this local index, which hold
  /// the two copies of the table (the lookup's and the output layer's) and sum their gradients.
  core::Group embedding_group(int rank) const;
};

/// Builds the layout; InfeasibleError when experts, ranks or layers do not divide (with the numbers).
Layout make_layout(const TrainingConfig& c);

}  // namespace moesys::policies::training
