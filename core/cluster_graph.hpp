#pragma once
// The cluster as a directed graph (Boost.Graph): devices are vertices, one-direction links are edges.
// It answers routes between any two devices; sim/ builds its SimGrid platform from it, one link per edge.
#include <cstdint>
#include <string>
#include <vector>

#include <boost/graph/adjacency_list.hpp>

#include "core/calibration.hpp"
#include "core/cluster.hpp"

namespace moesys::core {

enum class DeviceKind { gpu, cpu, ssd, nvswitch, pcie_switch, nic, leaf, spine };
enum class LinkClass { nvlink, pcie, nic, fabric, nvme };
const char* to_string(DeviceKind k);
const char* to_string(LinkClass c);

struct Device {
  DeviceKind kind;
  int node = -1;   // -1 for leaf and spine switches
  int index = 0;   // local index in the node (GPU, NIC, PCIe switch) or global index (leaf)
  std::string name;
};

/// One direction of a physical link. bytes_per_s is the spec rate times the calibrated efficiency of its class.
struct LinkEdge {
  LinkClass cls;
  double bytes_per_s = 0;
  double latency_s = 0;
  std::string name;
  int id = 0;  // dense index, 0..link_count()-1
};

class ClusterGraph {
public:
  using Graph = boost::adjacency_list<boost::vecS, boost::vecS, boost::directedS, Device, LinkEdge>;
  using Vertex = Graph::vertex_descriptor;

  ClusterGraph(const ClusterSpec& spec, const Calibration& cal);

  const ClusterSpec& spec() const { return spec_; }
  const Graph& graph() const { return g_; }
  std::size_t link_count() const { return links_.size(); }
  const LinkEdge& link(int id) const { return links_[static_cast<std::size_t>(id)]; }

  Vertex gpu(int global_gpu) const;
  Vertex cpu(int node) const;
  Vertex ssd(int node) const;  // throws std::out_of_range when the nodes have no SSD tier (ssd capacity 0)
  Vertex leaf(int leaf_index) const;
  Vertex spine() const;
  const Device& device(Vertex v) const { return g_[v]; }

  /// Links (ids) of the shortest-latency path from one device to another, in order. Routes between GPUs
  /// prefer NVLink inside a node; between nodes they leave through the NIC that serves the source GPU and
  /// enter through the NIC that serves the destination GPU (GPUDirect RDMA, no PXN).
  /// Throws std::runtime_error if no route exists.
  std::vector<int> route(Vertex from, Vertex to) const;

  /// A host copy's route between a GPU and its CPU: route() plus, for each PCIe link on it, the link's duplex
  /// constraint, which both of its directions share at 2 x rate x Calibration::pcie_duplex_efficiency. Only copy
  /// engines' host copies take it; GPUDirect RDMA through the NIC was fitted at full duplex (nic_efficiency).
  std::vector<int> host_copy_route(Vertex from, Vertex to) const;

  /// Smallest bandwidth along a route, bytes/s.
  double bottleneck_bytes_per_s(const std::vector<int>& route) const;
  double latency_s(const std::vector<int>& route) const;

private:
  Vertex add_device(DeviceKind kind, int node, int index, std::string name);
  void add_link(Vertex a, Vertex b, LinkClass cls, double bytes_per_s, double latency_s, const std::string& name);
  void add_duplex(Vertex a, Vertex b, LinkClass cls, double bytes_per_s, double latency_s, const std::string& name);
  std::vector<Vertex> gpu_to_nic(Vertex gpu) const;               // GPU, its PCIe path, the NIC serving it
  std::vector<Vertex> fixed_path(Vertex from, Vertex to) const;     // GPU/CPU/SSD routes; empty if none applies
  std::vector<int> shortest_route(Vertex from, Vertex to) const;    // Dijkstra fallback for other pairs
  std::vector<int> links_along(const std::vector<Vertex>& path) const;

  ClusterSpec spec_;
  Graph g_;
  std::vector<LinkEdge> links_;
  std::vector<int> duplex_of_;  // per link id: its PCIe duplex constraint's id (itself a link, in no route), or -1
  std::vector<Vertex> gpus_, cpus_, ssds_, leaves_;  // ssds_ is empty when the nodes have no SSD tier
  std::vector<Vertex> nvswitches_;                    // one per node when intra_node is nvswitch
  std::vector<Vertex> pcie_switches_, nics_;          // node * per_node + local index
  Vertex spine_ = 0;
  int gpus_per_node_ = 0;
  double pcie_duplex_rate_ = 0;
};

}  // namespace moesys::core
