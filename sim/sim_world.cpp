#include "sim/sim_world.hpp"

#include <algorithm>

#include "core/error.hpp"
#include "sim/profile.hpp"
#include "sim/progress_load.hpp"

namespace moesys::sim {

std::size_t RendezvousKeyHash::operator()(const RendezvousKey& k) const {
  std::uint64_t h = k.sequence * 0x9e3779b97f4a7c15ull;
  for (int v : {k.kind, k.a, k.b, k.c}) h = (h ^ static_cast<std::uint32_t>(v)) * 0x100000001b3ull;
  return static_cast<std::size_t>(h ^ (h >> 29));
}

SimWorld::SimWorld(const core::ClusterSpec& spec, const core::Calibration& cal, const FlowOptions& flow_options,
                   int world_ranks)
    : graph_(spec, core::for_network(cal, spec.node.nics.transport == core::NicTransport::efa)),
      cal_(core::for_network(cal, spec.node.nics.transport == core::NicTransport::efa)),
      world_ranks_(world_ranks > 0 ? world_ranks : spec.total_gpus()) {
  gpu_load_levels_ = communication_share_levels(graph_.spec(), cal_);
  platform_ = std::make_unique<Platform>(graph_, flow_options.mode == FlowMode::detailed, gpu_load_levels_);
  flows_ = std::make_unique<FlowEngine>(*platform_, cal_, flow_options);
}

int SimWorld::intern_group(const core::Group& group) {
  auto [it, added] = group_ids_.try_emplace(group.key(), static_cast<int>(group_keys_.size()));
  if (added) {
    group_keys_.push_back(group.key());
    group_members_.push_back(group.ranks());
  }
  return it->second;
}

namespace {
std::string signature_of(CollectiveOp op, double bytes, std::size_t members, core::CollectiveAlgo algo) {
  return std::string(to_string(op)) + " of " + std::to_string(static_cast<long long>(bytes)) + " bytes over " +
         std::to_string(members) + " ranks (" + core::to_string(algo) + ")";
}
}  // namespace

std::string SimWorld::describe(const RendezvousKey& k) const {
  if (k.kind == RendezvousKey::kPointToPoint)
    return "p2p[" + std::to_string(k.a) + ">" + std::to_string(k.b) + ":" + std::to_string(k.c) + "]#" +
           std::to_string(k.sequence);
  return std::string(to_string(static_cast<CollectiveOp>(k.kind))) + "[" + group_keys_[static_cast<std::size_t>(k.a)] +
         "]#" + std::to_string(k.sequence);
}

void SimWorld::join(const RendezvousKey& key, CollectiveOp op, const std::vector<int>& members, double bytes,
                    core::CollectiveAlgo algo, int member_index, std::vector<double> row) {
  // No mutex: SimGrid runs one actor at a time and switches only inside simcalls (the barrier, the plan's
  // flows), so everything between them is atomic with respect to the other members.
  auto& slot = rendezvous_[key];
  if (!slot) {
    slot = std::make_unique<Rendezvous>();
    slot->call.op = op;
    slot->call.members = members;
    slot->call.bytes = bytes;
    slot->call.point_to_point = key.kind == RendezvousKey::kPointToPoint;
    if (slot->call.point_to_point) {
      // A send/recv runs on the world's communicator (as the CUDA runtime's does): ranks are GPUs 0..world-1.
      slot->call.communicator_ranks = world_ranks_;
      slot->call.communicator_nodes = spec().node_of(world_ranks_ - 1) + 1;
    }
    slot->algo = algo;
    if (op == CollectiveOp::all_to_all) slot->call.matrix.assign(members.size(), {});
    profile::InSimgrid in;
    slot->finished = sg::sg4::Barrier::create(static_cast<unsigned>(members.size()));
  } else if (slot->call.op != op || static_cast<long long>(slot->call.bytes) != static_cast<long long>(bytes) ||
             slot->call.members.size() != members.size() || slot->algo != algo) {
    throw core::RuntimeFailure("ranks disagree on collective " + describe(key) + ": one called " +
                               signature_of(slot->call.op, slot->call.bytes, slot->call.members.size(), slot->algo) +
                               ", another " + signature_of(op, bytes, members.size(), algo));
  }
  Rendezvous* r = slot.get();
  if (op == CollectiveOp::all_to_all) r->call.matrix[static_cast<std::size_t>(member_index)] = std::move(row);
  if (++r->arrived == static_cast<int>(r->call.members.size())) {
    const int group = key.kind == RendezvousKey::kPointToPoint ? -1 : key.a;
    bool reused = false;
    std::shared_ptr<const CollectivePlan> plan;  // owned here: the cache may drop it while the flows run
    {
      profile::Scope in(profile::Phase::planning);
      plan = plans_.plan(spec(), cal_, group, r->call, r->algo, reused);
    }
    profile::count_collective(reused);
    execute_plan(*plan, *flows_, cal_, key.kind == RendezvousKey::kPointToPoint ? 0.0 : cal_.collective_latency_s);
  }
  {
    profile::InSimgrid in;
    r->finished->wait();
  }
  if (++r->departed == static_cast<int>(r->call.members.size())) rendezvous_.erase(key);
}

sg::sg4::Semaphore& SimWorld::compute_slots(int node) {
  if (slots_.empty()) slots_.resize(static_cast<std::size_t>(spec().nodes));
  auto& slot = slots_[static_cast<std::size_t>(node)];
  if (!slot) slot = sg::sg4::Semaphore::create(static_cast<unsigned>(spec().node.compute_slots));
  return *slot;
}

SlotCaches* SimWorld::slot_caches(int node) {
  const core::GpuSpec& gpu = spec().node.gpu;
  if (gpu.kernel_hot_rates.empty() || gpu.kernel_cache_bytes <= 0 || spec().node.compute_slots <= 0) return nullptr;
  if (slot_caches_.empty()) slot_caches_.resize(static_cast<std::size_t>(spec().nodes));
  auto& caches = slot_caches_[static_cast<std::size_t>(node)];
  if (!caches) caches = std::make_unique<SlotCaches>(spec().node.compute_slots, gpu.kernel_cache_bytes);
  return caches.get();
}

void SimWorld::record_failure(std::exception_ptr e) {
  if (!failure_) failure_ = e;
}

std::vector<std::string> SimWorld::pending_rendezvous() const {
  std::vector<std::string> keys;
  for (const auto& [k, r] : rendezvous_)
    keys.push_back(describe(k) + " (" + signature_of(r->call.op, r->call.bytes, r->call.members.size(), r->algo) +
                   ", " + std::to_string(r->arrived) + " of " + std::to_string(r->call.members.size()) +
                   " ranks arrived)");
  std::sort(keys.begin(), keys.end());
  return keys;
}

}  // namespace moesys::sim
