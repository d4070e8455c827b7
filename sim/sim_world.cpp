#include "sim/sim_world.hpp"

#include <algorithm>
#include <mutex>

#include "core/error.hpp"
#include "sim/profile.hpp"

namespace moesys::sim {

SimWorld::SimWorld(const core::ClusterSpec& spec, const core::Calibration& cal, FlowMode mode)
    : graph_(spec, cal), cal_(cal) {
  platform_ = std::make_unique<Platform>(graph_, mode == FlowMode::detailed);
  flows_ = std::make_unique<FlowEngine>(*platform_, cal_, mode);
}

namespace {
std::string signature_of(const CollectiveCall& call, core::CollectiveAlgo algo) {
  return std::string(to_string(call.op)) + " of " + std::to_string(static_cast<long long>(call.bytes)) +
         " bytes over " + std::to_string(call.members.size()) + " ranks (" + core::to_string(algo) + ")";
}
}  // namespace

void SimWorld::join(const std::string& key, const CollectiveCall& call, core::CollectiveAlgo algo, int member_index,
                    std::vector<double> row) {
  std::unique_lock lock(*mutex_, std::defer_lock);
  {
    profile::InSimgrid in;
    lock.lock();
  }
  auto& slot = rendezvous_[key];
  const std::string sig = signature_of(call, algo);
  if (!slot) {
    slot = std::make_unique<Rendezvous>();
    slot->call = call;
    slot->algo = algo;
    slot->signature = sig;
    if (call.op == CollectiveOp::all_to_all) slot->call.matrix.assign(call.members.size(), {});
  } else if (slot->signature != sig) {
    throw core::RuntimeFailure("ranks disagree on collective " + key + ": one called " + slot->signature +
                               ", another " + sig);
  }
  Rendezvous* r = slot.get();
  if (r->call.op == CollectiveOp::all_to_all) r->call.matrix[static_cast<std::size_t>(member_index)] = std::move(row);
  ++r->arrived;
  if (r->arrived == static_cast<int>(r->call.members.size())) {
    {
      profile::InSimgrid in;
      lock.unlock();
    }
    profile::count_collective(false);
    CollectivePlan plan;
    {
      profile::Scope in(profile::Phase::planning);
      plan = plan_collective(spec(), r->call, r->algo);
    }
    execute_plan(plan, *flows_, cal_.step_latency_s);
    profile::InSimgrid in;
    lock.lock();
    r->done = true;
    r->cv->notify_all();
  } else {
    profile::InSimgrid in;
    while (!r->done) r->cv->wait(lock);
  }
  if (++r->departed == static_cast<int>(r->call.members.size())) rendezvous_.erase(key);
  profile::InSimgrid in;
  lock.unlock();
}

void SimWorld::record_failure(std::exception_ptr e) {
  if (!failure_) failure_ = e;
}

std::vector<std::string> SimWorld::pending_rendezvous() const {
  std::vector<std::string> keys;
  for (const auto& [k, r] : rendezvous_)
    keys.push_back(k + " (" + r->signature + ", " + std::to_string(r->arrived) + " of " +
                   std::to_string(r->call.members.size()) + " ranks arrived)");
  std::sort(keys.begin(), keys.end());
  return keys;
}

}  // namespace moesys::sim
