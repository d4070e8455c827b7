#include "sim/flow_engine.hpp"

#include <algorithm>
#include <cmath>
#include <unordered_map>

namespace moesys::sim {

FlowEngine::FlowEngine(const Platform& platform, const core::Calibration& cal, FlowMode mode)
    : platform_(platform), cal_(cal), mode_(mode) {}

sg::sg4::CommPtr FlowEngine::start(sg::sg4::Host* from, sg::sg4::Host* to, double bytes, double efficiency) {
  ++flows_started_;
  auto comm = sg::sg4::Comm::sendto_init(from, to);
  comm->set_payload_size(static_cast<std::uint64_t>(std::ceil(bytes)));
  sg::set_next_flow_efficiency(efficiency);
  comm->start();
  return comm;
}

void FlowEngine::run(const std::vector<Transfer>& transfers) {
  std::vector<sg::sg4::CommPtr> comms;
  for (const Transfer& t : transfers) {
    if (t.bytes <= 0 || t.src_gpu == t.dst_gpu) continue;
    bytes_by_class_[static_cast<std::size_t>(platform_.classify(t.src_gpu, t.dst_gpu))] += t.bytes;
  }
  if (mode_ == FlowMode::detailed)
    run_detailed(transfers, comms);
  else
    run_aggregated(transfers, comms);
  sg::sg4::Comm::wait_all(comms);
}

void FlowEngine::copy(sg::sg4::Host* from, sg::sg4::Host* to, double bytes) {
  if (bytes <= 0) return;
  start(from, to, bytes, cal_.message_efficiency(bytes))->wait();
}

void FlowEngine::run_detailed(const std::vector<Transfer>& transfers, std::vector<sg::sg4::CommPtr>& comms) {
  for (const Transfer& t : transfers) {
    if (t.bytes <= 0 || t.src_gpu == t.dst_gpu) continue;
    comms.push_back(start(platform_.gpu(t.src_gpu), platform_.gpu(t.dst_gpu), t.bytes,
                          cal_.message_efficiency(t.message_bytes)));
  }
}

void FlowEngine::run_aggregated(const std::vector<Transfer>& transfers, std::vector<sg::sg4::CommPtr>& comms) {
  // One merged flow per (GPU, path class, direction); transfers that cannot be split (PCIe-only nodes) keep
  // their own end-to-end flow.
  struct Merged {
    double bytes = 0;
    double link_bytes = 0;  // link capacity the transfers use: sum of bytes / efficiency
  };
  std::unordered_map<std::uint64_t, Merged> out, in;
  auto key = [](int gpu, PathClass c) { return static_cast<std::uint64_t>(gpu) * kPathClassCount + static_cast<int>(c); };
  for (const Transfer& t : transfers) {
    if (t.bytes <= 0 || t.src_gpu == t.dst_gpu) continue;
    PathClass c = platform_.classify(t.src_gpu, t.dst_gpu);
    const double eff = cal_.message_efficiency(t.message_bytes);
    if (c == PathClass::intra_node && !platform_.intra_node_split()) {
      comms.push_back(start(platform_.gpu(t.src_gpu), platform_.gpu(t.dst_gpu), t.bytes, eff));
      continue;
    }
    for (auto* m : {&out[key(t.src_gpu, c)], &in[key(t.dst_gpu, c)]}) {
      m->bytes += t.bytes;
      m->link_bytes += t.bytes / eff;
    }
  }
  // Start in a fixed order so that runs are deterministic whatever the hash map's iteration order.
  auto start_all = [&](std::unordered_map<std::uint64_t, Merged>& m, bool egress) {
    std::vector<std::uint64_t> keys;
    keys.reserve(m.size());
    for (const auto& kv : m) keys.push_back(kv.first);
    std::sort(keys.begin(), keys.end());
    for (auto k : keys) {
      int gpu = static_cast<int>(k / kPathClassCount);
      auto c = static_cast<PathClass>(k % kPathClassCount);
      const auto& h = egress ? platform_.egress(gpu, c) : platform_.ingress(gpu, c);
      comms.push_back(start(h.from, h.to, m[k].bytes, m[k].bytes / m[k].link_bytes));
    }
  };
  start_all(out, true);
  start_all(in, false);
}

}  // namespace moesys::sim
