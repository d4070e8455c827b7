#pragma once
// State shared by all ranks of one simulation: the platform, the flow engine, and the rendezvous points where
// the members of a collective (or the two sides of a point-to-point message) meet.
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/calibration.hpp"
#include "core/cluster_graph.hpp"
#include "sim/collectives.hpp"
#include "sim/flow_engine.hpp"
#include "sim/operand_cache.hpp"
#include "sim/plan_cache.hpp"
#include "sim/platform.hpp"

namespace moesys::sim {

/// Names one collective instance (or one message) the same way on every member, without building strings:
/// a collective is (operation, interned group, sequence number of calls on that group); a message is
/// (point-to-point, source, destination, tag, sequence number of messages on that triple).
struct RendezvousKey {
  static constexpr int kPointToPoint = 4;  // `kind` of a message; collectives use their CollectiveOp
  int kind = 0;
  int a = 0, b = 0, c = 0;  // collective: group id; message: source, destination, tag
  std::uint64_t sequence = 0;
  bool operator==(const RendezvousKey&) const = default;
};
struct RendezvousKeyHash {
  std::size_t operator()(const RendezvousKey& k) const;
};

/// One collective instance (or one message) as its members arrive. The last member to arrive runs it.
struct Rendezvous {
  CollectiveCall call;
  core::CollectiveAlgo algo = core::CollectiveAlgo::automatic;
  int arrived = 0, departed = 0;
  /// Members wait here until the last to arrive has run the operation; one barrier releases them all at once.
  sg::sg4::BarrierPtr finished;
};

class SimWorld {
public:
  /// `world_ranks`: the ranks of the job (GPUs 0..world_ranks-1; 0: every GPU of the cluster).
  SimWorld(const core::ClusterSpec& spec, const core::Calibration& cal, const FlowOptions& flow_options = {},
           int world_ranks = 0);

  const core::ClusterSpec& spec() const { return graph_.spec(); }
  const core::Calibration& calibration() const { return cal_; }
  const Platform& platform() const { return *platform_; }
  /// The shares of a GPU that communication can take on this cluster (communication_share_levels): the GPU hosts'
  /// power states.
  const std::vector<double>& gpu_load_levels() const { return gpu_load_levels_; }
  FlowEngine& flows() { return *flows_; }

  /// A small integer naming the group (same members in the same order -> same id) for rendezvous keys.
  int intern_group(const core::Group& group);
  /// The members of an interned group (a stable reference).
  const std::vector<int>& group_members(int id) const { return group_members_[static_cast<std::size_t>(id)]; }

  /// Joins the rendezvous `key` with this member's row of the all-to-all matrix (empty for other operations),
  /// blocking until the operation has run. `members` are the global GPU ids in group order. Throws
  /// core::RuntimeFailure if members disagree on the operation.
  void join(const RendezvousKey& key, CollectiveOp op, const std::vector<int>& members, double bytes,
            core::CollectiveAlgo algo, int member_index, std::vector<double> row);

  /// The compute slots of `node` (NodeSpec::compute_slots permits, in arrival order): a kernel of a CPU rank
  /// holds one while it runs, as the CPU runtime's kernels do (exec/cpu/compute_slots.hpp). Created on first use.
  sg::sg4::Semaphore& compute_slots(int node);
  /// The caches of `node`'s compute slots where the cluster's kernels have hot rates (GpuSpec::kernel_hot_rates),
  /// else nullptr. Created on first use.
  SlotCaches* slot_caches(int node);

  /// First failure raised by any rank; the simulation stops all actors when one is recorded.
  void record_failure(std::exception_ptr e);
  std::exception_ptr failure() const { return failure_; }
  /// Keys of rendezvous that never completed (for the deadlock report).
  std::vector<std::string> pending_rendezvous() const;

private:
  std::string describe(const RendezvousKey& key) const;

  core::ClusterGraph graph_;
  core::Calibration cal_;
  int world_ranks_;
  std::vector<double> gpu_load_levels_;  // computed once: the platform and every rank's GpuLoad use them
  std::unique_ptr<Platform> platform_;
  std::unique_ptr<FlowEngine> flows_;
  std::unordered_map<std::string, int> group_ids_;
  std::vector<std::string> group_keys_;         // by group id
  std::deque<std::vector<int>> group_members_;  // by group id; a deque keeps references stable
  std::unordered_map<RendezvousKey, std::unique_ptr<Rendezvous>, RendezvousKeyHash> rendezvous_;
  PlanCache plans_;
  std::vector<sg::sg4::SemaphorePtr> slots_;  // by node, created on first use
  std::vector<std::unique_ptr<SlotCaches>> slot_caches_;  // by node, created on first use
  std::exception_ptr failure_;
};

}  // namespace moesys::sim
