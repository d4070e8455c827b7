#pragma once
// Collective algorithms of the simulator, modelled after NCCL's: each algorithm turns one collective call into
// stages; a stage is a set of concurrent transfers plus its latency: a number of algorithm steps, each costing the
// per-step latency of the protocol the stage uses (NCCL's Simple, LL128 or LL; sim/collectives/protocol.cpp), more
// for a step that crosses the network, and any fixed cost of the algorithm. Stages run one after another.
//
// Like NCCL, the automatic choice predicts the time of every algorithm and protocol the hardware offers (ring,
// tree, NVLS, NVLS-tree; LL, LL128, Simple) from the links' rates and the latencies, and runs the fastest; a tree's
// bandwidth is rated as NCCL's tuner rates it, from the ring's (sim/collectives/select.cpp). The prediction ignores
// contention with other traffic; the simulation of the chosen plan does not.
//
// Ring algorithms are simulated in lock-step: every step of a ring moves the same chunk along the same
// edges, so the steps are merged into one flow per ring edge carrying all of them (the per-step latency is
// still paid per step). This keeps an all-reduce on thousands of GPUs to a few flows per GPU.
#include <memory>
#include <string>
#include <vector>

#include "core/cluster.hpp"
#include "core/runtime.hpp"
#include "sim/flow_engine.hpp"

namespace moesys::sim {

enum class CollectiveOp { all_reduce, reduce_scatter, all_gather, all_to_all };
const char* to_string(CollectiveOp op);

struct CollectiveCall {
  CollectiveOp op = CollectiveOp::all_reduce;
  std::vector<int> members;                 // global GPU ids, in group order
  double bytes = 0;                         // nccl-tests size (see core/runtime.hpp); unused for all_to_all
  /// all_to_all: matrix[i][j] bytes from member i to member j. With deepep, each row goes on with the member's
  /// core::NodeTraffic (one entry per node of the group, ascending; -1 when none was given) and 1 for a combine,
  /// 0 for a dispatch (append_node_traffic), so that the plan cache keys on them too.
  std::vector<std::vector<double>> matrix;
  bool point_to_point = false;              // a send/recv pair, planned as a two-member all-to-all
  /// The NCCL communicator the call runs on, for its point-to-point channels (p2p_channel_rule): its ranks and the
  /// nodes they span. 0: the members (a group's collective); a send/recv runs on the world's.
  int communicator_ranks = 0;
  int communicator_nodes = 0;
};

/// How NCCL splits one point-to-point message over channels (sim/collectives/p2p_channels.cpp): a message starts on
/// up to min_channels, parts no smaller than min_part_bytes, and doubles its channels while a part is larger than
/// max_part_bytes and the peer has channels left (max_channels).
struct P2pChannelRule {
  int min_channels = 1;
  int max_channels = 1;
  double min_part_bytes = 1;
  double max_part_bytes = 1;
  /// The channels a message of `bytes` to one peer runs on.
  int channels(double bytes) const;
};
/// The rule of a communicator of `communicator_ranks` ranks over `communicator_nodes` nodes of `spec`.
P2pChannelRule p2p_channel_rule(const core::ClusterSpec& spec, int communicator_ranks, int communicator_nodes);

/// NCCL's protocols: Simple moves whole buffers and synchronises each step with a fence and a flag; LL128 and LL
/// put a flag in every 128-byte line or 8-byte word, so a step costs less latency and carries less data.
enum class Protocol { simple, ll128, ll };
const char* to_string(Protocol p);
/// Fraction of a link's rate that the protocol's payload gets: 1, 120/128 and 1/2.
double protocol_bandwidth_fraction(Protocol p);
/// Per-step latency of the protocol over NVLink/PCIe (Calibration::step_latency_s, ll128_..., ll_...).
double protocol_step_latency(Protocol p, const core::Calibration& cal);

/// A direct all-to-all's transfers kept as its matrix: one transfer per positive off-diagonal entry, member i to
/// member j, at `fraction` of the rate. Listed, they take 32 bytes per pair (2 GB at 8192 members); the matrix
/// takes 8. Its messages ramp as all_to_all_stage says: on their own size inside a node, on what their sender moves
/// over the network across it.
struct DenseAllToAll {
  std::vector<int> members;
  std::vector<std::vector<double>> matrix;
  double fraction = 1;
  std::vector<int> node;             // node of each member
  std::vector<double> network_bytes; // bytes each member sends to members on other nodes
  int most_network_peers = 0;        // the most peers on other nodes that one member sends to
  /// NCCL's channels per message (p2p_channel_rule) and one channel's rate: a message between two GPUs of a node
  /// moves at most channels x rate (Transfer::rate_cap). Rate 0: no bound.
  P2pChannelRule channel_rule;
  double channel_bytes_per_s = 0;
  /// The bound of a message of `bytes` between members i and j.
  double rate_cap(std::size_t i, std::size_t j, double bytes) const {
    return channel_bytes_per_s > 0 && node[i] == node[j] ? channel_rule.channels(bytes) * channel_bytes_per_s : 0.0;
  }
};
/// Builds a direct all-to-all's transfers with the per-member totals the ramp needs, its messages inside a node
/// bounded by NCCL's channels (channel_bytes_per_s 0: unbounded).
std::shared_ptr<const DenseAllToAll> make_dense_all_to_all(const core::ClusterSpec& spec, std::vector<int> members,
                                                           std::vector<std::vector<double>> matrix, double fraction,
                                                           const P2pChannelRule& channel_rule = {},
                                                           double channel_bytes_per_s = 0);

struct Stage {
  std::vector<Transfer> transfers;
  std::shared_ptr<const DenseAllToAll> dense;  // more transfers, after `transfers`
  int latency_steps = 0;       // algorithm steps inside nodes
  int net_latency_steps = 0;   // algorithm steps whose message crosses the network
  double fixed_latency_s = 0;  // costs of the stage that are not steps (NVLS setup, all-to-all peers)
  Protocol protocol = Protocol::simple;
  /// NCCL point-to-point traffic: a transfer between rails may go through a GPU on the destination's rail (PXN,
  /// FlowEngine::pxn_proxy). Collective algorithms that pick their own paths (rings per rail, the hierarchical
  /// all-to-all, DeepEP's kernels) leave it off.
  bool pxn = false;
  /// The stage's latency: its steps at the protocol's step latency (plus net_step_latency_s for network steps)
  /// and its fixed cost.
  double latency_s(const core::Calibration& cal) const;
  /// Calls f(const Transfer&) for every transfer: the listed ones, then the dense all-to-all's in row order.
  template <typename F>
  void for_each_transfer(F&& f) const {
    for (const Transfer& t : transfers) f(t);
    if (!dense) return;
    const std::size_t n = dense->members.size();
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < n; ++j)
        if (const double b = dense->matrix[i][j]; i != j && b > 0)
          f(Transfer{dense->members[i], dense->members[j], b,
                     dense->node[i] == dense->node[j] ? b : dense->network_bytes[i],
                     dense->fraction, false, true, 0, false, dense->rate_cap(i, j, b)});
  }
  /// Bytes the stage holds (for caches).
  std::size_t held_bytes() const;
};

using CollectivePlan = std::vector<Stage>;

/// A plan of one stage, moved in: `return {stage}` would copy it (an initializer list's elements are const), and an
/// all-to-all's stage over hundreds of GPUs holds tens of thousands of transfers.
inline CollectivePlan single_stage(Stage&& stage) {
  CollectivePlan plan;
  plan.push_back(std::move(stage));
  return plan;
}

/// Plans for each algorithm (one file each under sim/collectives/). Ring and tree take the protocol; NVLS and
/// all-to-all use Simple.
CollectivePlan plan_ring(const core::ClusterSpec& spec, const CollectiveCall& call, Protocol protocol);
CollectivePlan plan_tree(const core::ClusterSpec& spec, const core::Calibration& cal, const CollectiveCall& call,
                         Protocol protocol);
CollectivePlan plan_nvls(const core::ClusterSpec& spec, const core::Calibration& cal, const CollectiveCall& call,
                         bool across_nodes);
CollectivePlan plan_direct_all_to_all(const core::ClusterSpec& spec, const core::Calibration& cal,
                                      const CollectiveCall& call);
CollectivePlan plan_hierarchical_all_to_all(const core::ClusterSpec& spec, const core::Calibration& cal,
                                            const CollectiveCall& call);
/// DeepEP's normal and low-latency dispatch/combine (sim/collectives/deepep.cpp).
CollectivePlan plan_deepep(const core::ClusterSpec& spec, const core::Calibration& cal, const CollectiveCall& call);
CollectivePlan plan_deepep_low_latency(const core::ClusterSpec& spec, const core::Calibration& cal,
                                       const CollectiveCall& call);
/// NCCL's copy-engine all-gather and all-to-all inside one NVLink node (sim/collectives/copy_engine.cpp); throws
/// std::invalid_argument for a group across nodes or a node without NVLink.
CollectivePlan plan_copy_engine(const core::ClusterSpec& spec, const core::Calibration& cal, const CollectiveCall& call);
/// Throws std::invalid_argument unless the copy-engine algorithm can serve the members: an NVSwitch node, one node.
void check_copy_engine(const core::ClusterSpec& spec, const std::vector<int>& members);
/// Appends a deepep member's node traffic and direction to its all-to-all row (see CollectiveCall::matrix);
/// throws std::invalid_argument when the traffic does not have one entry per node of the group.
void append_node_traffic(const core::ClusterSpec& spec, const std::vector<int>& members,
                         const core::NodeTraffic& traffic, std::vector<double>& row);

/// NCCL's channels for a group: one ring per distinct NIC among a node's members (member GPU ids in ring order),
/// or a single ring in member order for one node or an irregular group.
std::vector<std::vector<int>> ring_orders(const core::ClusterSpec& spec, const std::vector<int>& members);

/// One all-to-all step: the stage's transfers, one (network) step of Simple latency and a network peer latency for
/// each peer on another node of the member with most. Each message ramps (Calibration::message_efficiency) on what
/// fills its pipeline: inside the node its own size (a peer's chunks move on channels of their own, each handed over
/// with its own flag), across the network the sum its sender moves over the network in the stage (one proxy feeds
/// the NIC every peer's chunks).
Stage all_to_all_stage(const core::ClusterSpec& spec, const core::Calibration& cal, Stage transfers);

/// True when the node's NVSwitches reduce in the switch (NVLink SHARP: NVSwitch gen3 of the Hopper nodes).
bool has_nvlink_sharp(const core::ClusterSpec& spec);
/// True when NVLS (and NVLS-tree) can serve the members: NVLink SHARP, and the same two or more local GPUs on every
/// node they span (NCCL's NVLS needs several local ranks; the tree across nodes pairs GPUs of equal local index).
bool nvls_applies(const core::ClusterSpec& spec, const std::vector<int>& members);
/// The nodes a call's members span, ascending, and their number.
std::vector<int> nodes_of(const core::ClusterSpec& spec, const std::vector<int>& members);
int nodes_spanned(const core::ClusterSpec& spec, const std::vector<int>& members);

/// The algorithms each operation accepts on this cluster and group; `automatic` stays automatic for the
/// all-reduce family (chosen per call by predicted time) and resolves to direct for all-to-all, NCCL's only one.
/// Throws std::invalid_argument naming the valid ones.
core::CollectiveAlgo resolve_algo(CollectiveOp op, core::CollectiveAlgo requested);
/// The plan `algo` gives; automatic: the fastest predicted (algorithm, protocol) pair the hardware offers.
CollectivePlan plan_collective(const core::ClusterSpec& spec, const core::Calibration& cal, const CollectiveCall& call,
                               core::CollectiveAlgo algo);
/// Time a plan would take on idle links: every stage's latency plus its busiest GPU port's bytes at the port's
/// (efficiency-scaled) rate. The automatic choice compares plans by it.
double predict_plan_time(const core::ClusterSpec& spec, const core::Calibration& cal, const CollectivePlan& plan);

/// Runs a plan's stages in order: each stage's latency, then its transfers. `call_latency_s` is paid once
/// before the first stage (Calibration::collective_latency_s; 0 for point-to-point messages).
void execute_plan(const CollectivePlan& plan, FlowEngine& flows, const core::Calibration& cal,
                  double call_latency_s = 0);

}  // namespace moesys::sim
