#pragma once
// State shared by all ranks of one simulation: the platform, the flow engine, and the rendezvous points where
// the members of a collective (or the two sides of a point-to-point message) meet.
#include <exception>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/calibration.hpp"
#include "core/cluster_graph.hpp"
#include "sim/collectives.hpp"
#include "sim/flow_engine.hpp"
#include "sim/platform.hpp"

namespace moesys::sim {

/// One collective instance (or one message) as its members arrive. The last member to arrive runs it.
struct Rendezvous {
  CollectiveCall call;
  core::CollectiveAlgo algo = core::CollectiveAlgo::automatic;
  std::string signature;  // what every member must agree on (operation, size, algorithm)
  int arrived = 0, departed = 0;
  bool done = false;
  sg::sg4::ConditionVariablePtr cv = sg::sg4::ConditionVariable::create();
};

class SimWorld {
public:
  SimWorld(const core::ClusterSpec& spec, const core::Calibration& cal, FlowMode mode);

  const core::ClusterSpec& spec() const { return graph_.spec(); }
  const core::Calibration& calibration() const { return cal_; }
  const Platform& platform() const { return *platform_; }
  FlowEngine& flows() { return *flows_; }
  sg::sg4::MutexPtr mutex() { return mutex_; }

  /// Joins the rendezvous `key` with this member's row of the all-to-all matrix (empty for other operations),
  /// blocking until the operation has run. Throws core::RuntimeFailure if members disagree on the operation.
  void join(const std::string& key, const CollectiveCall& call, core::CollectiveAlgo algo, int member_index,
            std::vector<double> row);

  /// First failure raised by any rank; the simulation stops all actors when one is recorded.
  void record_failure(std::exception_ptr e);
  std::exception_ptr failure() const { return failure_; }
  /// Keys of rendezvous that never completed (for the deadlock report).
  std::vector<std::string> pending_rendezvous() const;

private:
  core::ClusterGraph graph_;
  core::Calibration cal_;
  std::unique_ptr<Platform> platform_;
  std::unique_ptr<FlowEngine> flows_;
  sg::sg4::MutexPtr mutex_ = sg::sg4::Mutex::create();
  std::unordered_map<std::string, std::unique_ptr<Rendezvous>> rendezvous_;
  std::exception_ptr failure_;
};

}  // namespace moesys::sim
