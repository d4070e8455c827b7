#include "sim/platform.hpp"

#include <stdexcept>
#include <string>

namespace moesys::sim {

namespace {
// Device hosts run kernels as work measured in nanoseconds of device time (see SimRuntime::compute).
constexpr double kHostSpeed = 1e9;

// Splits an inter-node route at the top of its path: the sender half ends with the leaf->spine link when the
// route crosses the spine, otherwise with the NIC->leaf link.
std::pair<std::vector<int>, std::vector<int>> split_at_fabric(const core::ClusterGraph& g, const std::vector<int>& r) {
  std::size_t cut = r.size();
  for (std::size_t i = 0; i < r.size(); ++i)
    if (g.link(r[i]).cls == core::LinkClass::fabric) { cut = i + 1; break; }
  if (cut == r.size())
    for (std::size_t i = 0; i < r.size(); ++i)
      if (g.link(r[i]).cls == core::LinkClass::nic) { cut = i + 1; break; }
  if (cut == r.size()) throw std::logic_error("inter-node route without a NIC link");
  return {std::vector<int>(r.begin(), r.begin() + static_cast<long>(cut)),
          std::vector<int>(r.begin() + static_cast<long>(cut), r.end())};
}
}  // namespace

Platform::Platform(const core::ClusterGraph& graph, bool detailed_routes, const std::vector<double>& gpu_load_levels)
    : graph_(graph), detailed_(detailed_routes) {
  zone_ = sg::create_root_zone("cluster");
  sg::install_flow_efficiency_hook(zone_);
  build_hosts_and_links(gpu_load_levels);
  const auto& spec = graph_.spec();
  egress_.resize(static_cast<std::size_t>(spec.total_gpus()) * kPathClassCount);
  ingress_.resize(egress_.size());
  gpu_cpu_bw_.resize(static_cast<std::size_t>(spec.total_gpus()));
  ssd_read_bw_.resize(static_cast<std::size_t>(spec.nodes));
  ssd_write_bw_.resize(static_cast<std::size_t>(spec.nodes));
  for (int n = 0; n < spec.nodes; ++n) add_node_routes(n);
  add_inter_node_halves();
  if (detailed_) add_pair_routes();
  sg::seal(zone_);
}

sg::sg4::Host* Platform::compute_host(int g) const {
  if (slots_.empty()) return gpu(g);
  return slots_[static_cast<std::size_t>(g / graph_.spec().node.gpus)];
}

void Platform::build_hosts_and_links(const std::vector<double>& gpu_load_levels) {
  const auto& spec = graph_.spec();
  const int G = spec.node.gpus;
  std::vector<double> gpu_speeds;
  for (double share : gpu_load_levels) gpu_speeds.push_back(kHostSpeed * (1 - share));
  for (int n = 0; n < spec.nodes; ++n) {
    for (int l = 0; l < G; ++l)
      gpus_.push_back(sg::create_host(zone_, "gpu-" + std::to_string(n) + "-" + std::to_string(l), gpu_speeds));
    cpus_.push_back(sg::create_host(zone_, "cpu-" + std::to_string(n), kHostSpeed));
    // A multicore host: SimGrid runs each execution on at most one core and shares the cores among them.
    if (spec.node.compute_slots > 0)
      slots_.push_back(sg::create_host(zone_, "slots-" + std::to_string(n), kHostSpeed, spec.node.compute_slots));
    // A node without an SSD tier has no SSD host; copies to that tier are rejected by the runtime.
    ssds_.push_back(spec.node.ssd.capacity_bytes > 0 ? sg::create_host(zone_, "ssd-" + std::to_string(n), kHostSpeed)
                                                      : nullptr);
    if (spec.node.intra_node.kind == core::IntraNodeKind::nvswitch && G > 1)
      nvswitches_.push_back(sg::create_host(zone_, "nvswitch-" + std::to_string(n), kHostSpeed));
  }
  if (spec.nodes > 1) {
    for (int i = 0; i < spec.leaf_count(); ++i)
      leaves_.push_back(sg::create_host(zone_, "leaf-" + std::to_string(i), kHostSpeed));
    spine_ = sg::create_host(zone_, "spine", kHostSpeed);
  }
  links_.reserve(graph_.link_count());
  for (std::size_t i = 0; i < graph_.link_count(); ++i) {
    const auto& e = graph_.link(static_cast<int>(i));
    links_.push_back(sg::create_link(zone_, e.name + "#" + std::to_string(i), e.bytes_per_s, e.latency_s));
  }
}

std::vector<sg::sg4::Link*> Platform::links_of(const std::vector<int>& route) const {
  std::vector<sg::sg4::Link*> out;
  out.reserve(route.size());
  for (int id : route) out.push_back(links_[static_cast<std::size_t>(id)]);
  return out;
}

void Platform::add_node_routes(int n) {
  const auto& spec = graph_.spec();
  const int G = spec.node.gpus;
  const int first = n * G;
  for (int a = first; a < first + G; ++a) {
    for (int b = first; b < first + G; ++b) {
      if (a == b) continue;
      auto r = graph_.route(graph_.gpu(a), graph_.gpu(b));
      sg::add_route(zone_, gpu(a), gpu(b), links_of(r));
      if (!nvswitches_.empty() && b == (a == first ? first + 1 : first)) {
        // Through an NVSwitch a route is [a -> switch, switch -> b]: its first link is a's port out.
        sg::sg4::Host* sw = nvswitches_[static_cast<std::size_t>(n)];
        sg::add_route(zone_, gpu(a), sw, links_of({r.front()}));
        egress_[idx(a, PathClass::intra_node)] = {gpu(a), sw, graph_.link(r.front()).bytes_per_s};
      }
      if (!nvswitches_.empty() && a == (b == first ? first + 1 : first)) {
        sg::sg4::Host* sw = nvswitches_[static_cast<std::size_t>(n)];
        sg::add_route(zone_, sw, gpu(b), links_of({r.back()}));
        ingress_[idx(b, PathClass::intra_node)] = {sw, gpu(b), graph_.link(r.back()).bytes_per_s};
      }
    }
    auto up = graph_.host_copy_route(graph_.gpu(a), graph_.cpu(n));
    auto down = graph_.host_copy_route(graph_.cpu(n), graph_.gpu(a));
    sg::add_route(zone_, gpu(a), cpu(n), links_of(up));
    sg::add_route(zone_, cpu(n), gpu(a), links_of(down));
    gpu_cpu_bw_[static_cast<std::size_t>(a)] = graph_.bottleneck_bytes_per_s(up);
  }
  if (!ssd(n)) return;
  auto write = graph_.route(graph_.cpu(n), graph_.ssd(n));
  auto read = graph_.route(graph_.ssd(n), graph_.cpu(n));
  sg::add_route(zone_, cpu(n), ssd(n), links_of(write));
  sg::add_route(zone_, ssd(n), cpu(n), links_of(read));
  ssd_write_bw_[static_cast<std::size_t>(n)] = graph_.bottleneck_bytes_per_s(write);
  ssd_read_bw_[static_cast<std::size_t>(n)] = graph_.bottleneck_bytes_per_s(read);
}

PathClass Platform::classify(int src, int dst) const {
  const auto& spec = graph_.spec();
  const int ns = spec.node_of(src), nd = spec.node_of(dst);
  if (ns == nd) return PathClass::intra_node;
  const int ls = spec.leaf_of(ns, spec.node.nic_of_gpu(spec.local_of(src)));
  const int ld = spec.leaf_of(nd, spec.node.nic_of_gpu(spec.local_of(dst)));
  return ls == ld ? PathClass::same_leaf : PathClass::cross_leaf;
}

void Platform::add_inter_node_halves() {
  const auto& spec = graph_.spec();
  if (spec.nodes < 2) return;
  const int total = spec.total_gpus();
  // For every GPU and class, any peer of that class gives the half routes: a sender half depends only on the
  // sender and the class, a receiver half only on the receiver and the class.
  for (int g = 0; g < total; ++g) {
    bool found[kPathClassCount] = {true, false, false};
    const int same_local = spec.nodes - 1;  // candidates: the same local GPU on the other nodes first,
    for (int i = 1; i < same_local + total && !(found[1] && found[2]); ++i) {
      const int h = i <= same_local ? (g + i * spec.node.gpus) % total : (g + i - same_local) % total;  // then all
      PathClass c = classify(g, h);
      int ci = static_cast<int>(c);
      if (c == PathClass::intra_node || found[ci]) continue;
      found[ci] = true;
      auto [out, ignored] = split_at_fabric(graph_, graph_.route(graph_.gpu(g), graph_.gpu(h)));
      auto [ignored2, in] = split_at_fabric(graph_, graph_.route(graph_.gpu(h), graph_.gpu(g)));
      sg::sg4::Host* top = c == PathClass::cross_leaf
                               ? spine_
                               : leaves_[static_cast<std::size_t>(
                                     spec.leaf_of(spec.node_of(g), spec.node.nic_of_gpu(spec.local_of(g))))];
      sg::add_route(zone_, gpu(g), top, links_of(out));
      sg::add_route(zone_, top, gpu(g), links_of(in));
      egress_[idx(g, c)] = {gpu(g), top, graph_.bottleneck_bytes_per_s(out)};
      ingress_[idx(g, c)] = {top, gpu(g), graph_.bottleneck_bytes_per_s(in)};
    }
  }
}

void Platform::add_pair_routes() {
  const auto& spec = graph_.spec();
  const int total = spec.total_gpus();
  for (int a = 0; a < total; ++a)
    for (int b = 0; b < total; ++b)
      if (spec.node_of(a) != spec.node_of(b))
        sg::add_route(zone_, gpu(a), gpu(b), links_of(graph_.route(graph_.gpu(a), graph_.gpu(b))));
}

double Platform::pair_bottleneck(int src, int dst) const {
  return graph_.bottleneck_bytes_per_s(graph_.route(graph_.gpu(src), graph_.gpu(dst)));
}

double Platform::cpu_ssd_bottleneck(int node, bool write) const {
  return write ? ssd_write_bw_[static_cast<std::size_t>(node)] : ssd_read_bw_[static_cast<std::size_t>(node)];
}

}  // namespace moesys::sim
