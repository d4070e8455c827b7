#pragma once
// Cluster description: what a machine room looks like, loaded from topologies/*.json or generated from flags.
// Nodes are homogeneous (one node template repeated `nodes` times), as in every cluster the paper uses.
// All quantities are stored in base units (bytes, bytes/s, flop/s, seconds); JSON keys carry their unit.
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

namespace moesys::core {

/// Resource limits of a cluster description, refused up front with the numbers. The simulator is measured up to
/// 4096 GPUs (DESIGN.md: minutes and a few GB); 16384 leaves room for what-if fabrics while keeping a run within
/// one machine's memory, where a hundred thousand GPUs would be killed for memory hours later.
constexpr int kMaxClusterGpus = 16384;
constexpr int kMaxGpusPerNode = 4096;
/// Range of every capacity, bandwidth and peak rate in a cluster description, in the unit of its key.
constexpr double kMinHardwareQuantity = 1e-3;
constexpr double kMaxHardwareQuantity = 1e7;

enum class Dtype { fp32, tf32, fp16, bf16, fp8 };
const char* to_string(Dtype d);
Dtype parse_dtype(const std::string& s);  // throws std::invalid_argument
int dtype_bytes(Dtype d);

/// A kernel class's measured rate by size: work per second at each measured amount of work (small kernels of a
/// class run at a lower rate than large ones: a CPU's BLAS or a GPU's tiles fill less of the machine). A curve of
/// one point gives its rate at every size.
using RateCurve = std::map<double, double>;  // work -> work per second
/// The rate at `work`: interpolated between the neighbouring points in log(work), the nearest point's outside.
double rate_at(const RateCurve& curve, double work);

struct GpuSpec {
  std::string model;                        // "A100-SXM4-80GB"
  double hbm_bytes = 0;                     // capacity
  double hbm_bytes_per_s = 0;               // peak memory bandwidth
  std::map<Dtype, double> peak_flop_per_s;  // dense tensor-core peak per dtype
  int sms = 0;  // streaming multiprocessors: GEMM tiles run in waves of this many (0: unknown, no wave effect)
  /// Measured machines only (CPU ranks): work per second by kernel class (core/kernel_class.hpp) and size, used
  /// instead of the roofline for the classes it lists. Empty for GPUs: their kernels follow the roofline.
  std::map<std::string, RateCurve> kernel_rates;
  /// The same classes measured on operands in a compute slot's own cache (the previous kernel on that core touched
  /// them), and that cache's size: a kernel runs at a mix of the two by the share of its operands the slot's cache
  /// holds (sim/operand_cache.hpp). Empty / 0: every kernel at kernel_rates.
  std::map<std::string, RateCurve> kernel_hot_rates;
  double kernel_cache_bytes = 0;
  double peak(Dtype d) const;  // throws std::out_of_range if the dtype is not listed
};

enum class IntraNodeKind { nvswitch, pcie_only };

struct IntraNodeSpec {
  IntraNodeKind kind = IntraNodeKind::nvswitch;
  double bytes_per_s_per_gpu = 0;  // one direction, per GPU (NVLink ports through NVSwitch); 0 when pcie_only
};

struct HostMemorySpec {
  double capacity_bytes = 0;
  double bytes_per_s = 0;
};

struct PcieSwitchSpec {
  std::vector<int> gpus;  // local GPU indices behind this switch
  std::vector<int> nics;  // local NIC indices behind this switch
};

struct PcieSpec {
  int generation = 4;
  int lanes = 16;                        // per device link and per switch uplink
  std::vector<PcieSwitchSpec> switches;  // every GPU in exactly one switch
  double bytes_per_s() const;            // one direction, one link
};

/// The network's transport: InfiniBand or RoCE RDMA verbs, or AWS EFA (SRD through libfabric), whose messages
/// pay more latency and need larger sizes to reach the line rate (Calibration::efa_*).
enum class NicTransport { rdma, efa };

struct NicSpec {
  int count = 0;  // per node
  NicTransport transport = NicTransport::rdma;
  /// NCCL's PXN (on by default since NCCL 2.12; NCCL_PXN_DISABLE=1 turns it off): on nodes with an NVSwitch, an
  /// all-to-all or send/recv message to another node's GPU on another rail crosses NVLink to the GPU on the
  /// destination's rail and leaves through its NIC (sim FlowEngine::pxn_proxy). A setting of the communication
  /// library, kept with the NICs it routes over, as the transport is.
  bool pxn = true;
  double bytes_per_s = 0;              // one direction, per NIC
  std::vector<std::vector<int>> gpus;  // gpus[nic] = local GPUs this NIC serves (a partition of the GPUs)
};

struct SsdSpec {
  double capacity_bytes = 0;
  double read_bytes_per_s = 0;
  double write_bytes_per_s = 0;
};

struct NodeSpec {
  int gpus = 0;
  GpuSpec gpu;
  IntraNodeSpec intra_node;
  HostMemorySpec host_memory;
  PcieSpec pcie;
  NicSpec nics;
  SsdSpec ssd;
  /// Measured machines of CPU ranks: the kernels of all the node's "GPUs" share this many compute slots (the
  /// cores, counted in units of the threads one rank's kernel uses), each running a kernel at the rate it has
  /// alone. 0: every GPU computes on its own device.
  int compute_slots = 0;
  int nic_of_gpu(int local_gpu) const;     // the NIC serving a GPU
  int switch_of_gpu(int local_gpu) const;  // the PCIe switch a GPU sits behind
  int switch_of_nic(int nic) const;        // -1 if the NIC is not behind a listed switch
};

enum class FabricKind { rail_optimized, fat_tree };

/// Inter-node fabric. Rail-optimised: NIC i of every node hangs off leaf group i (rail i); a rail holds
/// `nodes_per_leaf` nodes per leaf switch. Fat-tree: consecutive nodes share a leaf, all their NICs on it.
/// Leaves connect to a non-blocking spine core through uplinks of (downlink capacity / oversubscription).
struct FabricSpec {
  FabricKind kind = FabricKind::rail_optimized;
  int nodes_per_leaf = 32;
  double oversubscription = 1.0;  // >= 1
  double hop_latency_s = 1e-6;    // per switch hop
};

struct ClusterSpec {
  std::string name;
  std::string description;  // optional free text ("description" in JSON); empty when absent
  int nodes = 0;
  NodeSpec node;
  FabricSpec fabric;

  int total_gpus() const { return nodes * node.gpus; }
  int node_of(int gpu) const { return gpu / node.gpus; }
  int local_of(int gpu) const { return gpu % node.gpus; }
  /// Leaf switch (global index) that a node's NIC connects to.
  int leaf_of(int node_index, int nic) const;
  int leaf_count() const;
};

/// Parses and validates a cluster description. `file` is used in error messages only.
/// Throws ConfigError("<file>: <json path>: <what was expected>") on any malformed, unknown, missing or
/// impossible field (zero or negative bandwidth, GPU not served by any NIC, NICs that do not divide the GPUs...).
ClusterSpec parse_cluster(const nlohmann::json& j, const std::string& file);
ClusterSpec load_cluster_file(const std::string& path);
nlohmann::json cluster_to_json(const ClusterSpec& c);
/// Measured kernel rates in the cluster file's form ("gpu.kernel_gwork_per_s"): {class: [[work, billions of work
/// per second], ...]}, a one-point curve of every size as its one rate.
nlohmann::json kernel_rates_to_json(const std::map<std::string, RateCurve>& curves);

/// Flags of the generator: `--nodes N --gpus-per-node G --nics-per-node K --nic-gbps B
/// --gpu a100-80g|a100-40g|h100|h200|h800` (h200 and h800: the nodes of topologies/dgx-h200.json, hgx-h800.json).
struct ClusterGeneratorOptions {
  int nodes = 6;
  int gpus_per_node = 8;
  int nics_per_node = 8;
  /// Unset: the GPU preset's NIC (200 Gb/s HDR on the A100 nodes, 400 Gb/s NDR on the Hopper nodes).
  std::optional<double> nic_gbits_per_s;
  std::string gpu = "a100-80g";
};
/// Builds a DGX-like cluster from the options (validates the result like a file; errors name "<flags>").
ClusterSpec generate_cluster(const ClusterGeneratorOptions& o);

}  // namespace moesys::core
