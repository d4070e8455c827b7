#include "sim/sparse_route_zone.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include <simgrid/kernel/routing/NetPoint.hpp>
#include <simgrid/kernel/routing/NetZoneImpl.hpp>

namespace moesys::sim::sg {

namespace {

namespace routing = simgrid::kernel::routing;
using simgrid::kernel::resource::StandardLinkImpl;

class SparseRouteZone final : public routing::NetZoneImpl {
 public:
  explicit SparseRouteZone(const std::string& name) : NetZoneImpl(name) {}

  void add_route(routing::NetPoint* src, routing::NetPoint* dst, routing::NetPoint* gw_src,
                 routing::NetPoint* gw_dst, const std::vector<simgrid::s4u::LinkInRoute>& links,
                 bool symmetrical) override {
    if (gw_src || gw_dst || symmetrical || !src->is_host() || !dst->is_host() || links.empty())
      throw std::logic_error("sparse route zone: only one-way, non-empty routes between hosts (" + src->get_name() +
                             " -> " + dst->get_name() + ")");
    for (const auto& l : links)
      if (l.get_link()->get_latency() != 0)  // get_local_route adds no latency: refuse what it would drop
        throw std::logic_error("sparse route zone: link " + l.get_link()->get_name() + " has a latency");
    if (src->id() >= by_source_.size()) by_source_.resize(src->id() + 1);
    auto& routes = by_source_[src->id()];
    const auto at = find(routes, dst);  // kept sorted by destination: a handful per host, more on detailed platforms
    if (at != routes.end() && at->dst == dst->id())
      throw std::logic_error("sparse route zone: route " + src->get_name() + " -> " + dst->get_name() +
                             " declared twice");
    routes.insert(at, {dst->id(), get_link_list_impl(links, false)});
  }

  // As FullZone: a pair without a route adds no link (SimGrid then reports that the hosts are not connected).
  // Unlike FullZone there is no loopback route from a host to itself: the simulator never starts such a flow (the
  // flow engine drops src == dst, copies and carriers always join two hosts), and SimGrid would report it.
  void get_local_route(const routing::NetPoint* src, const routing::NetPoint* dst, routing::Route* into,
                       double* /*latency: every link has none*/) override {
    if (src->id() >= by_source_.size()) return;
    const auto& routes = by_source_[src->id()];
    const auto it = find(routes, dst);
    if (it == routes.end() || it->dst != dst->id()) return;
    into->link_list_.insert(into->link_list_.end(), it->links.begin(), it->links.end());
  }

 private:
  struct Route {
    unsigned long dst = 0;
    std::vector<StandardLinkImpl*> links;
  };
  // The first route to dst or beyond it.
  static std::vector<Route>::const_iterator find(const std::vector<Route>& routes, const routing::NetPoint* dst) {
    return std::lower_bound(routes.begin(), routes.end(), dst->id(),
                            [](const Route& r, unsigned long id) { return r.dst < id; });
  }

  std::vector<std::vector<Route>> by_source_;  // by source netpoint id
};

}  // namespace

simgrid::s4u::NetZone* create_sparse_route_zone(const std::string& name) {
  return (new SparseRouteZone(name))->get_iface();
}

}  // namespace moesys::sim::sg
