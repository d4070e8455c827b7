#include "sim/simgrid_adapter.hpp"

#include <deque>
#include <map>
#include <tuple>
#include <unordered_set>

#include <simgrid/kernel/resource/NetworkModelIntf.hpp>

#include "sim/sparse_route_zone.hpp"

namespace moesys::sim::sg {

void configure_engine(sg4::Engine& engine) {
  (void)engine;
  // CM02 with no cross-traffic: a flow gets exactly its max-min share of the link rates (LV08 would add its
  // own bandwidth and latency factors, which our calibration already covers).
  sg4::Engine::set_config("network/model:CM02");
  sg4::Engine::set_config("network/crosstraffic:0");
  // Plain max-min sharing: no RTT-based weights (CM02 weighs flows by route latency, so SimGrid links carry no
  // latency; per-step and per-message latencies are modelled by the collective algorithms instead).
  sg4::Engine::set_config("network/weight-S:0");
  // Thousands of ranks, each with a few stream actors: keep stacks small (KiB).
  sg4::Engine::set_config("contexts/stack-size:128");
  // No guard page below each stack: a guard is one more memory mapping per actor, and past about 30,000 actors
  // (4096 GPUs, with the flow carriers) the process reaches Linux's default limit of 65,530 mappings and SimGrid
  // aborts. The actors' code does not recurse; 128 KiB is many times what it uses.
  sg4::Engine::set_config("contexts/guard-size:0");
}

sg4::NetZone* create_root_zone(const std::string& name) { return create_sparse_route_zone(name); }

sg4::Host* create_host(sg4::NetZone* zone, const std::string& name, double speed_flop_per_s, int cores) {
  return zone->create_host(name, speed_flop_per_s)->set_core_count(cores)->seal();
}

sg4::Host* create_host(sg4::NetZone* zone, const std::string& name, const std::vector<double>& speed_per_pstate) {
  return zone->create_host(name, speed_per_pstate)->seal();
}

sg4::Link* create_link(sg4::NetZone* zone, const std::string& name, double bytes_per_s, double latency_s) {
  (void)latency_s;  // see configure_engine: latency lives in the algorithms, not in the links
  return zone->create_link(name, bytes_per_s)->seal();
}

void add_route(sg4::NetZone* zone, sg4::Host* from, sg4::Host* to, const std::vector<sg4::Link*>& links) {
  std::vector<sg4::LinkInRoute> route;
  route.reserve(links.size());
  for (sg4::Link* l : links) route.emplace_back(l);
  zone->add_route(from->get_netpoint(), to->get_netpoint(), nullptr, nullptr, route, /*symmetrical=*/false);
}

void seal(sg4::NetZone* zone) { zone->seal(); }

namespace {
using FlowKey = std::tuple<const sg4::Host*, const sg4::Host*, std::uint64_t>;
std::map<FlowKey, std::deque<double>> g_pending_efficiency;
}  // namespace

void register_flow_efficiency(const sg4::Host* from, const sg4::Host* to, std::uint64_t bytes, double efficiency) {
  g_pending_efficiency[{from, to, bytes}].push_back(efficiency);
}

void install_flow_efficiency_hook(sg4::NetZone* zone) {
  // In SimGrid 3.32 the bandwidth factor both bounds the flow (factor x slowest link) and scales what it
  // consumes on every link of its route: exactly an efficiency.
  zone->get_network_model()->set_bw_factor_cb([](double size, const sg4::Host* from, const sg4::Host* to,
                                                 const std::vector<sg4::Link*>&, const std::unordered_set<sg4::NetZone*>&) {
    auto it = g_pending_efficiency.find({from, to, static_cast<std::uint64_t>(size)});
    if (it == g_pending_efficiency.end()) return 1.0;
    const double f = it->second.front();
    it->second.pop_front();
    if (it->second.empty()) g_pending_efficiency.erase(it);
    return f;
  });
}

}  // namespace moesys::sim::sg
