#include "sim/sparse_route_zone.hpp"

#include <cstdint>
#include <stdexcept>
#include <string>
#include <unordered_map>
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
    auto [it, inserted] = routes_.try_emplace(key(src, dst), get_link_list_impl(links, false));
    if (!inserted)
      throw std::logic_error("sparse route zone: route " + src->get_name() + " -> " + dst->get_name() +
                             " declared twice");
  }

  // As FullZone: a pair without a route adds no link (SimGrid then reports that the hosts are not connected).
  void get_local_route(const routing::NetPoint* src, const routing::NetPoint* dst, routing::Route* into,
                       double* /*latency: every link has none*/) override {
    const auto it = routes_.find(key(src, dst));
    if (it == routes_.end()) return;
    into->link_list_.insert(into->link_list_.end(), it->second.begin(), it->second.end());
  }

 private:
  static std::uint64_t key(const routing::NetPoint* src, const routing::NetPoint* dst) {
    return (static_cast<std::uint64_t>(src->id()) << 32) | static_cast<std::uint64_t>(dst->id());
  }

  std::unordered_map<std::uint64_t, std::vector<StandardLinkImpl*>> routes_;
};

}  // namespace

simgrid::s4u::NetZone* create_sparse_route_zone(const std::string& name) {
  return (new SparseRouteZone(name))->get_iface();
}

}  // namespace moesys::sim::sg
