#pragma once
// With sim/sparse_route_zone.cpp (its root zone), the only file that touches SimGrid's platform-creation API
// (renamed between 3.32 and 4.x: create_*_zone, create_host, create_link, add_route). An upgrade changes these two
// files and nothing else.
#include <cstdint>
#include <string>
#include <vector>

#include <simgrid/s4u.hpp>

namespace moesys::sim::sg {

namespace sg4 = simgrid::s4u;

/// Configures the engine for exact link rates: CM02 without TCP-window caps, cross-traffic and latency factors,
/// and small actor stacks so that thousands of ranks fit in memory.
void configure_engine(sg4::Engine& engine);

/// The root zone: every route listed explicitly (routes come from the cluster graph, not from SimGrid), stored
/// only for the pairs that have one (sim/sparse_route_zone.hpp).
sg4::NetZone* create_root_zone(const std::string& name);
sg4::Host* create_host(sg4::NetZone* zone, const std::string& name, double speed_flop_per_s, int cores = 1);
/// A one-core host with one speed per power state (Host::set_pstate), the first one in force.
sg4::Host* create_host(sg4::NetZone* zone, const std::string& name, const std::vector<double>& speed_per_pstate);
sg4::Link* create_link(sg4::NetZone* zone, const std::string& name, double bytes_per_s, double latency_s);
/// One-direction route from one host to another through `links`, in order.
void add_route(sg4::NetZone* zone, sg4::Host* from, sg4::Host* to, const std::vector<sg4::Link*>& links);
void seal(sg4::NetZone* zone);

/// A flow's efficiency f in (0, 1]: it moves f bytes per byte of link capacity it uses, so alone on its route
/// it reaches f times the slowest link. SimGrid applies it through the network model's bandwidth-factor hook,
/// which sees only the endpoints and the size: register the efficiency under those right before starting the
/// flow. Several actors may start flows in one scheduling round, so registrations queue per (from, to, bytes).
void register_flow_efficiency(const sg4::Host* from, const sg4::Host* to, std::uint64_t bytes, double efficiency);
/// Installs that hook on the zone's network model (once, after the root zone exists).
void install_flow_efficiency_hook(sg4::NetZone* zone);

}  // namespace moesys::sim::sg
