#pragma once
// A SimGrid network zone with explicit routes, like SimGrid's FullZone, that stores only the routes it is given.
// FullZone allocates a table of (netpoints x netpoints) route pointers when it is sealed: at 8192 GPUs (about
// 11,300 hosts with the nodes' CPUs, SSDs and NVSwitches and the fabric's switches) that is 1 GB before any
// route exists, while the platform declares a handful of routes per host (intra-node pairs, GPU <-> CPU, and the
// halves of inter-node paths). The same routes are returned for the same pairs, so simulated times are unchanged.
#include <simgrid/s4u.hpp>

namespace moesys::sim::sg {

/// The zone, created as the platform's root (SimGrid takes ownership, as with create_full_zone). Every link on its
/// routes must have zero latency (latencies are modelled by the collective algorithms; see configure_engine):
/// routes through a link with latency are refused. Routes are one-directional, between hosts, without gateways.
simgrid::s4u::NetZone* create_sparse_route_zone(const std::string& name);

}  // namespace moesys::sim::sg
