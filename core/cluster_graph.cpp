// The cluster graph: one vertex per device, one edge per direction of every physical link.
//
// Per node: GPUs, the CPU (host memory), the SSD (if the node has one), the NVSwitch (if intra_node is
// nvswitch), the PCIe switches and the NICs. Then the leaves of the fabric and one non-blocking spine.
// A duplex link "<a>-<b>" has two directed edges: "<a>-<b>:up" from a to b and "<a>-<b>:down" from b to a,
// where a is the endpoint device (GPU, NIC) or the PCIe switch under the CPU, or the leaf under the spine.
// The NVMe link is asymmetric, so its two directions are "nN.nvme:read" (SSD -> CPU, at the read bandwidth)
// and "nN.nvme:write" (CPU -> SSD, at the write bandwidth).
//
// Routes between GPUs, and between a GPU, its CPU and its SSD, are built explicitly: they follow the
// hardware's fixed paths (NVLink inside a node; GPUDirect RDMA through the source GPU's own NIC and the
// destination GPU's own NIC between nodes), which a shortest-path search could not guarantee and which cost
// microseconds to build. Any other pair falls back to Dijkstra on latency with a per-hop tie-break.
#include "core/cluster_graph.hpp"

#include <algorithm>
#include <boost/graph/dijkstra_shortest_paths.hpp>
#include <boost/graph/filtered_graph.hpp>
#include <boost/property_map/function_property_map.hpp>
#include <limits>
#include <stdexcept>

namespace moesys::core {

const char* to_string(DeviceKind k) {
  switch (k) {
    case DeviceKind::gpu:
      return "gpu";
    case DeviceKind::cpu:
      return "cpu";
    case DeviceKind::ssd:
      return "ssd";
    case DeviceKind::nvswitch:
      return "nvswitch";
    case DeviceKind::pcie_switch:
      return "pcie_switch";
    case DeviceKind::nic:
      return "nic";
    case DeviceKind::leaf:
      return "leaf";
    case DeviceKind::spine:
      return "spine";
  }
  return "?";
}

const char* to_string(LinkClass c) {
  switch (c) {
    case LinkClass::nvlink:
      return "nvlink";
    case LinkClass::pcie:
      return "pcie";
    case LinkClass::nic:
      return "nic";
    case LinkClass::fabric:
      return "fabric";
    case LinkClass::nvme:
      return "nvme";
  }
  return "?";
}

ClusterGraph::ClusterGraph(const ClusterSpec& spec, const Calibration& cal)
    : spec_(spec), gpus_per_node_(spec.node.gpus) {
  const NodeSpec& n = spec.node;
  const int switches = static_cast<int>(n.pcie.switches.size());
  const bool nvswitch = n.intra_node.kind == IntraNodeKind::nvswitch;
  const bool has_ssd = n.ssd.capacity_bytes > 0;
  const double nvlink_rate = n.intra_node.bytes_per_s_per_gpu * cal.nvlink_efficiency;
  const double pcie_rate = n.pcie.bytes_per_s() * cal.pcie_efficiency;
  pcie_duplex_rate_ = 2 * pcie_rate * cal.pcie_duplex_efficiency;
  const double nic_rate = n.nics.bytes_per_s * cal.nic_efficiency;
  const double hop = spec.fabric.hop_latency_s;

  for (int node = 0; node < spec.nodes; ++node) {
    // Built with append rather than "literal" + string: GCC 12 at -O3 reports a false -Wrestrict on the latter.
    const std::string p = std::string("n").append(std::to_string(node)).append(".");
    for (int i = 0; i < n.gpus; ++i)
      gpus_.push_back(add_device(DeviceKind::gpu, node, i, p + "gpu" + std::to_string(i)));
    const Vertex cpu = add_device(DeviceKind::cpu, node, 0, p + "cpu");
    cpus_.push_back(cpu);
    if (has_ssd) {
      const Vertex ssd = add_device(DeviceKind::ssd, node, 0, p + "ssd");
      ssds_.push_back(ssd);
      add_link(ssd, cpu, LinkClass::nvme, n.ssd.read_bytes_per_s, 0, p + "nvme:read");
      add_link(cpu, ssd, LinkClass::nvme, n.ssd.write_bytes_per_s, 0, p + "nvme:write");
    }
    if (nvswitch) {
      const Vertex nvs = add_device(DeviceKind::nvswitch, node, 0, p + "nvswitch");
      nvswitches_.push_back(nvs);
      for (int i = 0; i < n.gpus; ++i)
        add_duplex(gpu(node * n.gpus + i), nvs, LinkClass::nvlink, nvlink_rate, 0,
                   p + "gpu" + std::to_string(i) + "-nvswitch");
    }
    for (int s = 0; s < switches; ++s) {
      const std::string sw_name = "pcie" + std::to_string(s);
      const Vertex sw = add_device(DeviceKind::pcie_switch, node, s, p + sw_name);
      pcie_switches_.push_back(sw);
      add_duplex(sw, cpu, LinkClass::pcie, pcie_rate, 0, p + sw_name + "-cpu");  // the switch's uplink
      for (int i : n.pcie.switches[static_cast<std::size_t>(s)].gpus)
        add_duplex(gpu(node * n.gpus + i), sw, LinkClass::pcie, pcie_rate, 0,
                   p + "gpu" + std::to_string(i) + "-" + sw_name);
    }
    for (int k = 0; k < n.nics.count; ++k) {
      const std::string nic_name = "nic" + std::to_string(k);
      const Vertex nic = add_device(DeviceKind::nic, node, k, p + nic_name);
      nics_.push_back(nic);
      // A NIC that no switch lists hangs directly off the CPU's root complex.
      const int s = n.switch_of_nic(k);
      const Vertex up = s >= 0 ? pcie_switches_[static_cast<std::size_t>(node * switches + s)] : cpu;
      add_duplex(nic, up, LinkClass::pcie, pcie_rate, 0, p + nic_name + "-" + g_[up].name.substr(p.size()));
    }
  }

  std::vector<int> downlinks(static_cast<std::size_t>(spec.leaf_count()), 0);
  for (int l = 0; l < spec.leaf_count(); ++l)
    leaves_.push_back(add_device(DeviceKind::leaf, -1, l, "leaf" + std::to_string(l)));
  spine_ = add_device(DeviceKind::spine, -1, 0, "spine");
  for (int node = 0; node < spec.nodes; ++node)
    for (int k = 0; k < n.nics.count; ++k) {
      const int l = spec.leaf_of(node, k);
      ++downlinks[static_cast<std::size_t>(l)];
      add_duplex(nics_[static_cast<std::size_t>(node * n.nics.count + k)], leaves_[static_cast<std::size_t>(l)],
                 LinkClass::nic, nic_rate, hop,
                 std::string("n").append(std::to_string(node)).append(".nic").append(std::to_string(k))
                     .append("-leaf").append(std::to_string(l)));
    }
  // Uplink = the leaf's total downlink capacity / oversubscription (efficiency-scaled like the downlinks, so
  // that oversubscription 1 is exactly non-blocking).
  for (int l = 0; l < spec.leaf_count(); ++l)
    add_duplex(leaves_[static_cast<std::size_t>(l)], spine_, LinkClass::fabric,
               downlinks[static_cast<std::size_t>(l)] * nic_rate / spec.fabric.oversubscription, hop,
               "leaf" + std::to_string(l) + "-spine");
}

ClusterGraph::Vertex ClusterGraph::add_device(DeviceKind kind, int node, int index, std::string name) {
  return boost::add_vertex(Device{kind, node, index, std::move(name)}, g_);
}

void ClusterGraph::add_link(Vertex a, Vertex b, LinkClass cls, double bytes_per_s, double latency_s,
                            const std::string& name) {
  LinkEdge e{cls, bytes_per_s, latency_s, name, static_cast<int>(links_.size())};
  boost::add_edge(a, b, e, g_);
  links_.push_back(std::move(e));
}

void ClusterGraph::add_duplex(Vertex a, Vertex b, LinkClass cls, double bytes_per_s, double latency_s,
                              const std::string& name) {
  add_link(a, b, cls, bytes_per_s, latency_s, name + ":up");
  add_link(b, a, cls, bytes_per_s, latency_s, name + ":down");
  if (cls != LinkClass::pcie) return;
  // The shared constraint of both directions: a link of its own that no edge of the graph stands for.
  const int up = static_cast<int>(links_.size()) - 2, shared = static_cast<int>(links_.size());
  links_.push_back(LinkEdge{cls, pcie_duplex_rate_, 0, name + ":duplex", shared});
  duplex_of_.resize(links_.size(), -1);
  duplex_of_[static_cast<std::size_t>(up)] = duplex_of_[static_cast<std::size_t>(up + 1)] = shared;
}

namespace {

template <class V>
V checked(const std::vector<V>& v, int i, const char* what) {
  if (i < 0 || static_cast<std::size_t>(i) >= v.size())
    throw std::out_of_range(std::string("cluster graph: no ") + what + " " + std::to_string(i));
  return v[static_cast<std::size_t>(i)];
}

}  // namespace

ClusterGraph::Vertex ClusterGraph::gpu(int global_gpu) const {
  return checked(gpus_, global_gpu, "GPU");
}
ClusterGraph::Vertex ClusterGraph::cpu(int node) const {
  return checked(cpus_, node, "CPU of node");
}
ClusterGraph::Vertex ClusterGraph::ssd(int node) const {
  return checked(ssds_, node, "SSD of node");
}  // none if no SSD tier
ClusterGraph::Vertex ClusterGraph::leaf(int leaf_index) const {
  return checked(leaves_, leaf_index, "leaf");
}
ClusterGraph::Vertex ClusterGraph::spine() const {
  return spine_;
}

std::vector<ClusterGraph::Vertex> ClusterGraph::gpu_to_nic(Vertex gpu_v) const {
  const NodeSpec& n = spec_.node;
  const Device& d = g_[gpu_v];
  const int per_node = static_cast<int>(n.pcie.switches.size());
  const int k = n.nic_of_gpu(d.index), s = n.switch_of_gpu(d.index), sn = n.switch_of_nic(k);
  std::vector<Vertex> p{gpu_v, pcie_switches_[static_cast<std::size_t>(d.node * per_node + s)]};
  if (sn != s) {  // the NIC is elsewhere on the PCIe tree: up through the root complex
    p.push_back(cpus_[static_cast<std::size_t>(d.node)]);
    if (sn >= 0) p.push_back(pcie_switches_[static_cast<std::size_t>(d.node * per_node + sn)]);
  }
  p.push_back(nics_[static_cast<std::size_t>(d.node * n.nics.count + k)]);
  return p;
}

std::vector<ClusterGraph::Vertex> ClusterGraph::fixed_path(Vertex from, Vertex to) const {
  // Endpoint order gpu < cpu < ssd; other orders are the reverse of the same path (every link is duplex).
  auto order = [](DeviceKind k) {
    return k == DeviceKind::gpu ? 0 : k == DeviceKind::cpu ? 1 : k == DeviceKind::ssd ? 2 : -1;
  };
  const Device &a = g_[from], &b = g_[to];
  if (order(a.kind) < 0 || order(b.kind) < 0) return {};
  if (order(a.kind) > order(b.kind)) {
    auto p = fixed_path(to, from);
    std::reverse(p.begin(), p.end());
    return p;
  }
  const NodeSpec& n = spec_.node;
  const auto sw = [&](int node, int s) {
    return pcie_switches_[static_cast<std::size_t>(node) * n.pcie.switches.size() + static_cast<std::size_t>(s)];
  };
  if (a.kind == DeviceKind::gpu && b.kind == DeviceKind::gpu) {
    if (a.node == b.node) {
      if (n.intra_node.kind == IntraNodeKind::nvswitch)
        return {from, nvswitches_[static_cast<std::size_t>(a.node)], to};
      const int sa = n.switch_of_gpu(a.index), sb = n.switch_of_gpu(b.index);
      if (sa == sb) return {from, sw(a.node, sa), to};
      return {from, sw(a.node, sa), cpus_[static_cast<std::size_t>(a.node)], sw(b.node, sb), to};
    }
    std::vector<Vertex> p = gpu_to_nic(from), q = gpu_to_nic(to);
    const Vertex la = leaves_[static_cast<std::size_t>(spec_.leaf_of(a.node, g_[p.back()].index))];
    const Vertex lb = leaves_[static_cast<std::size_t>(spec_.leaf_of(b.node, g_[q.back()].index))];
    p.push_back(la);
    if (la != lb) p.insert(p.end(), {spine_, lb});
    p.insert(p.end(), q.rbegin(), q.rend());
    return p;
  }
  if (a.node != b.node) return {};  // host or SSD traffic between nodes: no fixed hardware path
  std::vector<Vertex> p{from};
  if (a.kind == DeviceKind::gpu)
    p.insert(p.end(), {sw(a.node, n.switch_of_gpu(a.index)), cpus_[static_cast<std::size_t>(a.node)]});
  if (b.kind == DeviceKind::ssd) p.push_back(to);
  return p;
}

std::vector<int> ClusterGraph::links_along(const std::vector<Vertex>& path) const {
  std::vector<int> ids;
  ids.reserve(path.size());
  for (std::size_t i = 0; i + 1 < path.size(); ++i) {
    auto [e, found] = boost::edge(path[i], path[i + 1], g_);
    if (!found) throw std::logic_error("cluster graph: no link " + g_[path[i]].name + " -> " + g_[path[i + 1]].name);
    ids.push_back(g_[e].id);
  }
  return ids;
}

namespace {

// Devices that terminate traffic (GPUs, SSDs) never forward it: only the route's source may leave them.
struct NoForwarding {
  const ClusterGraph::Graph* g = nullptr;
  ClusterGraph::Vertex source = 0;
  bool operator()(const ClusterGraph::Graph::edge_descriptor& e) const {
    const auto u = boost::source(e, *g);
    const DeviceKind k = (*g)[u].kind;
    return u == source || (k != DeviceKind::gpu && k != DeviceKind::ssd);
  }
};

}  // namespace

std::vector<int> ClusterGraph::shortest_route(Vertex from, Vertex to) const {
  constexpr double kHopTieBreak = 1e-12;  // fewest hops among equal latencies; far below any real latency
  boost::filtered_graph<Graph, NoForwarding> fg(g_, NoForwarding{&g_, from});
  const std::size_t nv = boost::num_vertices(g_);
  std::vector<Vertex> pred(nv);
  std::vector<double> dist(nv, std::numeric_limits<double>::infinity());
  auto weight = boost::make_function_property_map<Graph::edge_descriptor>(
      [this](const Graph::edge_descriptor& e) { return g_[e].latency_s + kHopTieBreak; });
  auto index = boost::get(boost::vertex_index, g_);
  boost::dijkstra_shortest_paths(fg, from,
                                 boost::predecessor_map(boost::make_iterator_property_map(pred.begin(), index))
                                     .distance_map(boost::make_iterator_property_map(dist.begin(), index))
                                     .weight_map(weight));
  if (dist[to] == std::numeric_limits<double>::infinity())
    throw std::runtime_error("cluster graph: no route from " + g_[from].name + " to " + g_[to].name);
  std::vector<Vertex> path{to};
  while (path.back() != from) path.push_back(pred[path.back()]);
  std::reverse(path.begin(), path.end());
  return links_along(path);
}

std::vector<int> ClusterGraph::route(Vertex from, Vertex to) const {
  const std::size_t nv = boost::num_vertices(g_);
  if (from >= nv || to >= nv) throw std::runtime_error("cluster graph: route between unknown devices");
  if (from == to) return {};
  std::vector<Vertex> path = fixed_path(from, to);
  return path.empty() ? shortest_route(from, to) : links_along(path);
}

std::vector<int> ClusterGraph::host_copy_route(Vertex from, Vertex to) const {
  std::vector<int> r = route(from, to);
  const std::size_t links = r.size();
  for (std::size_t i = 0; i < links; ++i)
    if (static_cast<std::size_t>(r[i]) < duplex_of_.size() && duplex_of_[static_cast<std::size_t>(r[i])] >= 0)
      r.push_back(duplex_of_[static_cast<std::size_t>(r[i])]);
  return r;
}

double ClusterGraph::bottleneck_bytes_per_s(const std::vector<int>& route) const {
  double rate = std::numeric_limits<double>::infinity();  // an empty route (a device to itself) is free
  for (int id : route) rate = std::min(rate, link(id).bytes_per_s);
  return rate;
}

double ClusterGraph::latency_s(const std::vector<int>& route) const {
  double total = 0;
  for (int id : route) total += link(id).latency_s;
  return total;
}

}  // namespace moesys::core
