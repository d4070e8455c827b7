#pragma once
// The SimGrid platform of a cluster, built in C++ from the cluster graph: one host per GPU, CPU and SSD, one
// SimGrid link per one-direction graph edge, and explicit routes taken from the graph.
//
// Flow aggregation. A flow between GPUs on different nodes is split at the top of its path into a sender half
// (GPU -> PCIe -> NIC -> leaf [-> spine]) and a receiver half ([spine ->] leaf -> NIC -> PCIe -> GPU); inside
// an NVSwitch node the halves are the two NVLink ports. Halves of many flows that share a GPU and a path
// class are merged into one SimGrid flow. The network cannot tell merged halves apart: they cross the same
// links, and the switch cores (NVSwitch, spine) are non-blocking. A 4096-GPU all-to-all then needs ~6 flows
// per GPU instead of 4095. `detailed` platforms also hold every end-to-end GPU pair route, so tests can check
// that both models give the same simulated time.
#include <vector>

#include "core/cluster_graph.hpp"
#include "sim/simgrid_adapter.hpp"

namespace moesys::sim {

enum class PathClass { intra_node = 0, same_leaf = 1, cross_leaf = 2 };
inline constexpr int kPathClassCount = 3;

class Platform {
public:
  /// `gpu_load_levels`: the shares of a GPU that communication can take (sim/progress_load.hpp), 0 first; each GPU
  /// host computes at (1 - level) of its speed in power state i.
  Platform(const core::ClusterGraph& graph, bool detailed_routes, const std::vector<double>& gpu_load_levels = {0});

  const core::ClusterGraph& graph() const { return graph_; }
  bool detailed() const { return detailed_; }

  sg::sg4::Host* gpu(int g) const { return gpus_[static_cast<std::size_t>(g)]; }
  /// Where GPU g's kernels execute: its own host, or the node's shared compute slots (NodeSpec::compute_slots).
  sg::sg4::Host* compute_host(int g) const;
  sg::sg4::Host* cpu(int node) const { return cpus_[static_cast<std::size_t>(node)]; }
  sg::sg4::Host* ssd(int node) const { return ssds_[static_cast<std::size_t>(node)]; }

  PathClass classify(int src_gpu, int dst_gpu) const;
  /// True when intra-node traffic can be split at an NVSwitch (otherwise it always uses pair routes).
  bool intra_node_split() const { return !nvswitches_.empty(); }

  /// One half of a flow: the hosts SimGrid sees and the slowest link on the way.
  struct Half {
    sg::sg4::Host* from = nullptr;
    sg::sg4::Host* to = nullptr;
    double bottleneck_bytes_per_s = 0;
  };
  const Half& egress(int gpu, PathClass c) const { return egress_[idx(gpu, c)]; }
  const Half& ingress(int gpu, PathClass c) const { return ingress_[idx(gpu, c)]; }

  /// Slowest link of the end-to-end route between two devices (bytes/s).
  double pair_bottleneck(int src_gpu, int dst_gpu) const;
  double gpu_cpu_bottleneck(int gpu) const { return gpu_cpu_bw_[static_cast<std::size_t>(gpu)]; }
  double cpu_ssd_bottleneck(int node, bool write) const;

private:
  static std::size_t idx(int gpu, PathClass c) {
    return static_cast<std::size_t>(gpu) * kPathClassCount + static_cast<std::size_t>(c);
  }
  std::vector<sg::sg4::Link*> links_of(const std::vector<int>& route) const;
  void build_hosts_and_links(const std::vector<double>& gpu_load_levels);
  void add_node_routes(int node);
  void add_inter_node_halves();
  void add_pair_routes();

  const core::ClusterGraph& graph_;
  bool detailed_;
  sg::sg4::NetZone* zone_ = nullptr;
  std::vector<sg::sg4::Link*> links_;
  std::vector<sg::sg4::Host*> slots_;  // per node, when the node's GPUs share compute slots
  std::vector<sg::sg4::Host*> gpus_, cpus_, ssds_, nvswitches_, leaves_;
  sg::sg4::Host* spine_ = nullptr;
  std::vector<Half> egress_, ingress_;
  std::vector<double> gpu_cpu_bw_;
  std::vector<double> ssd_read_bw_, ssd_write_bw_;
};

}  // namespace moesys::sim
