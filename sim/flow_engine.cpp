#include "sim/flow_engine.hpp"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "sim/collectives.hpp"
#include "sim/profile.hpp"

namespace moesys::sim {

FlowEngine::FlowEngine(const Platform& platform, const core::Calibration& cal, const FlowOptions& options)
    : platform_(platform),
      cal_(cal),
      mode_(options.mode),
      pxn_(platform.graph().spec().node.nics.pxn),
      direct_flow_limit_(options.direct_flow_limit),
      flows_per_carrier_(std::max<std::size_t>(1, options.flows_per_carrier)),
      carriers_(platform.gpu(0)),
      solo_(options.solo_flows, [this](const std::vector<Flow>& flows) { start_and_wait(flows); },
            options.max_solo_component) {}

FlowEngine::~FlowEngine() = default;

void FlowEngine::start_and_wait(const std::vector<Flow>& flows) {
  // Two ways to run a flow, the same network action either way (sim/flow_carriers.hpp): a host-to-host
  // communication, whose completion costs a scan of every one in flight, or a carrier's mailbox communication,
  // about 13 us more per flow on this code's hosts but with no such scan. Past several hundred host-to-host flows
  // in flight the scan costs more. A carrier's two actors wait on its flows, and each completion scans their own
  // list of activities: a few dozen flows per carrier keep it short. Both sizes (SimOptions, defaults 600 and 32)
  // were swept on the 207.2B step at 512 GPUs with moesys_sim_profile (docs/simulator-speed.md).
  // A rate bound (Flow::rate_cap) holds only on a mailbox communication: SimGrid 3.32 does not pass an s4u
  // Comm's rate to a host-to-host one.
  const bool capped = std::any_of(flows.begin(), flows.end(), [](const Flow& f) { return f.rate_cap > 0; });
  if (capped || direct_in_flight_ + flows.size() > direct_flow_limit_) {
    profile::InSimgrid in;
    carriers_.run(flows, flows_per_carrier_);
    return;
  }
  direct_in_flight_ += flows.size();
  start_and_wait_direct(flows);
  direct_in_flight_ -= flows.size();
}

sg::sg4::CommPtr FlowEngine::start(const Flow& f) {
  profile::InSimgrid in;
  const auto bytes = static_cast<std::uint64_t>(std::ceil(f.bytes));
  auto comm = sg::sg4::Comm::sendto_init(f.from, f.to);
  comm->set_payload_size(bytes);
  sg::register_flow_efficiency(f.from, f.to, bytes, f.efficiency);
  comm->start();
  return comm;
}

void FlowEngine::start_and_wait_direct(const std::vector<Flow>& flows) {
  // SimGrid 3.32 removes a finished activity from its actor's list by a linear scan, so one actor waiting on
  // thousands of flows costs quadratically. Beyond a few dozen flows, helper actors start and wait on a slice
  // each; the caller waits for the last helper.
  constexpr std::size_t kFlowsPerActor = 256;
  if (flows.size() <= kFlowsPerActor) {
    std::vector<sg::sg4::CommPtr> comms;
    comms.reserve(flows.size());
    for (const Flow& f : flows) comms.push_back(start(f));
    profile::InSimgrid in;
    sg::sg4::Comm::wait_all(comms);
    return;
  }
  struct Batch {
    std::size_t remaining = 0;
    sg::sg4::MutexPtr mutex = sg::sg4::Mutex::create();
    sg::sg4::ConditionVariablePtr done = sg::sg4::ConditionVariable::create();
  };
  profile::InSimgrid in;
  auto batch = std::make_shared<Batch>();
  batch->remaining = (flows.size() + kFlowsPerActor - 1) / kFlowsPerActor;
  for (std::size_t first = 0; first < flows.size(); first += kFlowsPerActor) {
    std::vector<Flow> slice(flows.begin() + static_cast<long>(first),
                            flows.begin() + static_cast<long>(std::min(flows.size(), first + kFlowsPerActor)));
    sg::sg4::Actor::create("flows", sg::sg4::this_actor::get_host(), [this, batch, slice = std::move(slice)] {
      profile::InSimgrid own;
      std::vector<sg::sg4::CommPtr> comms;
      comms.reserve(slice.size());
      for (const Flow& f : slice) comms.push_back(start(f));
      sg::sg4::Comm::wait_all(comms);
      std::unique_lock lock(*batch->mutex);
      if (--batch->remaining == 0) batch->done->notify_all();
    });
  }
  std::unique_lock lock(*batch->mutex);
  while (batch->remaining > 0) batch->done->wait(lock);
}

int FlowEngine::pxn_proxy(int src, int dst) const {
  const core::ClusterSpec& spec = platform_.graph().spec();
  const core::NodeSpec& node = spec.node;
  const int ns = spec.node_of(src), nd = spec.node_of(dst);
  if (!pxn_ || ns == nd || !platform_.intra_node_split()) return -1;
  const int ls = spec.local_of(src), ld = spec.local_of(dst);
  if (node.nic_of_gpu(ls) == node.nic_of_gpu(ld)) return -1;
  // Every node has the same layout, so the source node's GPU of the destination's local index is on its rail.
  return ns * node.gpus + ld;
}

template <typename F>
void FlowEngine::for_each_routed_transfer(const Stage& stage, F&& f) const {
  if (!stage.pxn || !pxn_) {
    stage.for_each_transfer(f);
    return;
  }
  stage.for_each_transfer([&](const Transfer& t) {
    const int proxy = pxn_proxy(t.src_gpu, t.dst_gpu);
    if (proxy < 0) return f(t);
    // Both legs move the network message, at the network's ramp (Transfer::network_message).
    Transfer first = t, second = t;
    first.dst_gpu = proxy;
    first.network_message = true;
    second.src_gpu = proxy;
    f(first);
    f(second);
  });
}

void FlowEngine::run(const Stage& stage) {
  std::vector<Flow> flows;
  profile::Scope planning(profile::Phase::planning);
  for_each_routed_transfer(stage, [&](const Transfer& t) {
    if (t.bytes <= 0 || t.src_gpu == t.dst_gpu) return;
    bytes_by_class_[static_cast<std::size_t>(platform_.classify(t.src_gpu, t.dst_gpu))] += t.bytes;
  });
  if (mode_ == FlowMode::detailed)
    plan_detailed(stage, flows);
  else
    plan_aggregated(stage, flows);
  flows_started_ += flows.size();
  solo_.run(flows);
}

void FlowEngine::copy(sg::sg4::Host* from, sg::sg4::Host* to, double bytes) {
  if (bytes <= 0) return;
  ++flows_started_;
  solo_.run({{from, to, bytes, cal_.message_efficiency(bytes)}});
}

void FlowEngine::engine_copy(sg::sg4::Host* from, sg::sg4::Host* to, double bytes, double efficiency) {
  if (bytes <= 0) return;
  ++flows_started_;
  {
    profile::InSimgrid in;
    sg::sg4::this_actor::sleep_for(cal_.copy_setup_s);
  }
  solo_.run({{from, to, bytes, efficiency}});
}

void FlowEngine::engine_copy(sg::sg4::Host* from, sg::sg4::Host* to, double bytes) {
  engine_copy(from, to, bytes, 1.0);
}

void FlowEngine::peer_copy(int src_gpu, int dst_gpu, double bytes) {
  const bool nvlink = platform_.graph().spec().node.intra_node.kind == core::IntraNodeKind::nvswitch;
  const double engine = nvlink ? cal_.ce_nvlink_efficiency / cal_.nvlink_efficiency : 1.0;
  engine_copy(platform_.gpu(src_gpu), platform_.gpu(dst_gpu), bytes, engine);
}

double transfer_efficiency(const core::Calibration& cal, const Transfer& t, bool network) {
  if (t.copy_engine) return t.bandwidth_fraction;
  const double ramp = t.ramp_half_bytes > 0 ? core::ramp_efficiency(t.ramp_half_bytes, t.message_bytes)
                                            : cal.message_efficiency(t.message_bytes, network, t.point_to_point);
  return ramp * t.bandwidth_fraction;
}

void FlowEngine::plan_detailed(const Stage& stage, std::vector<Flow>& flows) const {
  for_each_routed_transfer(stage, [&](const Transfer& t) {
    if (t.bytes <= 0 || t.src_gpu == t.dst_gpu) return;
    const bool network = t.network_message || platform_.classify(t.src_gpu, t.dst_gpu) != PathClass::intra_node;
    flows.push_back({platform_.gpu(t.src_gpu), platform_.gpu(t.dst_gpu), t.bytes,
                     transfer_efficiency(cal_, t, network), t.rate_cap});
  });
}

void FlowEngine::plan_aggregated(const Stage& stage, std::vector<Flow>& flows) const {
  // One merged flow per (GPU, path class, direction); transfers that cannot be split (PCIe-only nodes) keep
  // their own end-to-end flow.
  struct Merged {
    double bytes = 0;
    double link_bytes = 0;  // link capacity the transfers use: sum of bytes / efficiency
    double rate_cap = 0;    // the sum of the transfers' caps while every one has a cap; -1 once one has none
  };
  std::unordered_map<std::uint64_t, Merged> out, in;
  auto key = [](int gpu, PathClass c) {
    return static_cast<std::uint64_t>(gpu) * kPathClassCount + static_cast<int>(c);
  };
  for_each_routed_transfer(stage, [&](const Transfer& t) {
    if (t.bytes <= 0 || t.src_gpu == t.dst_gpu) return;
    PathClass c = platform_.classify(t.src_gpu, t.dst_gpu);
    const bool network = t.network_message || c != PathClass::intra_node;
    const double eff = transfer_efficiency(cal_, t, network);
    if (c == PathClass::intra_node && !platform_.intra_node_split()) {
      flows.push_back({platform_.gpu(t.src_gpu), platform_.gpu(t.dst_gpu), t.bytes, eff, t.rate_cap});
      return;
    }
    for (auto* m : {&out[key(t.src_gpu, c)], &in[key(t.dst_gpu, c)]}) {
      m->bytes += t.bytes;
      m->link_bytes += t.bytes / eff;
      // Merged messages move side by side, so their caps add up; one without a cap leaves the merged flow none.
      m->rate_cap = t.rate_cap > 0 && m->rate_cap >= 0 ? m->rate_cap + t.rate_cap : -1;
    }
  });
  // Emit in a fixed order so that runs are deterministic whatever the hash map's iteration order.
  auto emit = [&](std::unordered_map<std::uint64_t, Merged>& m, bool egress) {
    std::vector<std::uint64_t> keys;
    keys.reserve(m.size());
    for (const auto& kv : m) keys.push_back(kv.first);
    std::sort(keys.begin(), keys.end());
    for (auto k : keys) {
      int gpu = static_cast<int>(k / kPathClassCount);
      auto c = static_cast<PathClass>(k % kPathClassCount);
      const auto& h = egress ? platform_.egress(gpu, c) : platform_.ingress(gpu, c);
      flows.push_back({h.from, h.to, m[k].bytes, m[k].bytes / m[k].link_bytes, std::max(m[k].rate_cap, 0.0)});
    }
  };
  emit(out, true);
  emit(in, false);
}

}  // namespace moesys::sim
