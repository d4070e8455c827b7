#pragma once
// Redundant expert slots: besides its `local` experts of an MoE layer, every member of an expert-parallel group
// has `slots` spare slots that hold copies (replicas) of other members' experts, chosen from the measured load.
// Two strategies fill them:
//   eplb  DeepSeek's EPLB: every `every` steps the spare slots go, one at a time, to the expert with the largest
//         load per copy; the copies are then dealt to the members with the least load that have a free slot and no
//         copy of that expert yet (heaviest copy first). Global scope does this over the whole group; node scope
//         (EPLB's hierarchical form) does it inside each node group: a node's spare slots copy only experts owned on
//         that node, so every copy's refresh stays on the node's links and tokens cross nodes exactly as without
//         copies. (EPLB's first hierarchical step, packing expert groups onto nodes, is the static layout here:
//         an expert's owner does not move.)
//   hot   FasterMoE's shadowing: every step the `slots` hottest experts of the last step are copied to every member.
// One rule splits a sender's rows for an expert over its holders (split_rows): a sender that holds the expert
// keeps its rows; the others spread theirs evenly over the holders. With symmetric senders every holder then gets
// the same share, and a shadowed expert costs no exchange at all.
// In training the owner keeps the only optimizer state: the replicas' gradients are summed into the owner's after
// the backward pass, and the updated weights go out to the next step's holders after the optimizer step. A
// rebalance therefore moves nothing beyond that refresh, which every step pays.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace moesys::policies::training {

enum class Replication { none, eplb, hot };
const char* to_string(Replication v);

struct ReplicaSettings {
  Replication kind = Replication::none;
  int slots = 1;  // spare expert slots per rank per MoE layer
  int every = 1;  // eplb: steps between rebalances
  bool node_scope = false;  // eplb: copies stay on their owner's node (hierarchical) instead of anywhere (global)
  bool operator==(const ReplicaSettings&) const = default;
};

/// Which expert each spare slot of an expert-parallel group holds (the same for every group and layer shape).
struct ReplicaMap {
  int ep = 0, local = 0, slots = 0;
  std::vector<int> slot_expert;  // [member * slots + j]: the expert in spare slot j of member, -1 when free

  bool any() const;
  int physical() const { return local + slots; }  // expert slots per member
  /// Where expert e lives: (member, physical slot), its owner first, then its replicas by member.
  std::vector<std::pair<int, int>> holders(int e) const;
  /// holders() of every expert.
  std::vector<std::vector<std::pair<int, int>>> all_holders() const;
  /// `rows` rows that member `sender` routes to expert e, per holder (in holders() order).
  std::vector<std::int64_t> split_rows(int e, int sender, std::int64_t rows) const;
  bool operator==(const ReplicaMap&) const = default;
};

/// split_rows over a holder list (see the header comment for the rule).
std::vector<std::int64_t> split_over(const std::vector<std::pair<int, int>>& holders, int sender, std::int64_t rows);

/// The empty map (every spare slot free).
ReplicaMap no_replicas(int ep, int local, int slots);
/// The spare slots filled by `kind` from `load` (tokens per expert); a member's copies are ordered by expert, so
/// that the copies of one owner's experts sit side by side. members_per_node > 0 places eplb's copies inside each
/// node group of that many consecutive members (node scope); 0 places them over the whole group.
ReplicaMap place_replicas(Replication kind, const std::vector<double>& load, int ep, int local, int slots,
                          int members_per_node = 0);

/// The maps of successive steps from the loads measured in the steps before: step 0 has no copies (nothing is
/// measured yet); eplb rebalances at every multiple of `every` from the load summed since the last rebalance, hot
/// uses the last step's load. The simulator feeds it the routing plan's counts, real runs the gate's.
class ReplicaPlanner {
 public:
  /// members_per_node: consecutive members of the group on one node (used by node scope).
  ReplicaPlanner(ReplicaSettings settings, int moe_layers, int experts, int ep, int local, int members_per_node);
  /// The maps of the step about to run, one per MoE layer.
  const std::vector<ReplicaMap>& maps() const { return maps_; }
  /// Step `step` has run with `load[layer][expert]` tokens routed: fixes the maps of step `step` + 1.
  void observe(int step, const std::vector<std::vector<double>>& load);

 private:
  ReplicaSettings settings_;
  int ep_, local_, members_per_node_;
  std::vector<std::vector<double>> since_;  // load summed since the last rebalance
  std::vector<ReplicaMap> maps_;
};

/// Per-rank load imbalance of one MoE layer: the most rows a rank's experts compute over the mean (1 = even).
double rank_imbalance(const std::vector<std::int64_t>& rows_per_rank);

}  // namespace moesys::policies::training
