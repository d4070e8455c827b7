// Cluster descriptions: JSON parsing with one-line, path-precise errors, serialisation, and the generator.
//
// JSON format decisions (see topologies/*.json for complete examples):
// - Keys carry their unit (hbm_gib, gbits_per_s, hop_latency_us); values are stored in base units.
// - Every key is required except: "description" (root, free text), "fabric" (whole block optional; inside
//   it every key is optional and defaults to FabricSpec's values), "peak_tflops.fp8", "gpu.kernel_gwork_per_s" and
//   "compute_slots" (a measured machine of CPU ranks: work per second by kernel class, one number or
//   [[work, rate], ...] by size; cores shared by the ranks), and "ssd". An
//   omitted "ssd" block means the node has no SSD tier (capacity 0); a present one needs all three fields.
// - "intra_node" is {"kind": "nvswitch", "gbytes_per_s_per_gpu": X} or {"kind": "pcie_only"}.
// - NICs must divide the GPUs evenly: nics.gpus is a partition of the node's GPUs into `count` lists of
//   gpus/count GPUs each, so every rail carries the same traffic.
// - PCIe switches: every GPU behind exactly one switch; a NIC behind at most one (a NIC behind none hangs
//   off the CPU's root complex).
// - Unknown keys are errors at every level, so a misspelt key never silently falls back to a default.
#include "core/cluster.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <fstream>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "core/error.hpp"
#include "core/json_input.hpp"
#include "core/units.hpp"

namespace moesys::core {

using nlohmann::json;

const char* to_string(Dtype d) {
  switch (d) {
    case Dtype::fp32:
      return "fp32";
    case Dtype::tf32:
      return "tf32";
    case Dtype::fp16:
      return "fp16";
    case Dtype::bf16:
      return "bf16";
    case Dtype::fp8:
      return "fp8";
  }
  return "?";
}

Dtype parse_dtype(const std::string& s) {
  for (Dtype d : {Dtype::fp32, Dtype::tf32, Dtype::fp16, Dtype::bf16, Dtype::fp8})
    if (s == to_string(d)) return d;
  throw std::invalid_argument("unknown dtype \"" + s + "\" (expected fp32, tf32, fp16, bf16 or fp8)");
}

int dtype_bytes(Dtype d) {
  switch (d) {
    case Dtype::fp32:
    case Dtype::tf32:
      return 4;  // tf32 is stored as fp32; only the tensor-core math is reduced
    case Dtype::fp16:
    case Dtype::bf16:
      return 2;
    case Dtype::fp8:
      return 1;
  }
  return 0;
}

double GpuSpec::peak(Dtype d) const {
  auto it = peak_flop_per_s.find(d);
  if (it == peak_flop_per_s.end())
    throw std::out_of_range("GPU " + model + " has no " + to_string(d) + " peak in its description");
  return it->second;
}

double PcieSpec::bytes_per_s() const {
  return pcie_bytes_per_s(generation, lanes);
}

int NodeSpec::nic_of_gpu(int local_gpu) const {
  for (std::size_t n = 0; n < nics.gpus.size(); ++n)
    for (int g : nics.gpus[n])
      if (g == local_gpu) return static_cast<int>(n);
  throw std::out_of_range("GPU " + std::to_string(local_gpu) + " is served by no NIC");
}

int NodeSpec::switch_of_gpu(int local_gpu) const {
  for (std::size_t s = 0; s < pcie.switches.size(); ++s)
    for (int g : pcie.switches[s].gpus)
      if (g == local_gpu) return static_cast<int>(s);
  throw std::out_of_range("GPU " + std::to_string(local_gpu) + " is behind no PCIe switch");
}

int NodeSpec::switch_of_nic(int nic) const {
  for (std::size_t s = 0; s < pcie.switches.size(); ++s)
    for (int n : pcie.switches[s].nics)
      if (n == nic) return static_cast<int>(s);
  return -1;
}

namespace {

int ceil_div(int a, int b) {
  return (a + b - 1) / b;
}

}  // namespace

int ClusterSpec::leaf_of(int node_index, int nic) const {
  if (node_index < 0 || node_index >= nodes || nic < 0 || nic >= node.nics.count)
    throw std::out_of_range("leaf_of: node " + std::to_string(node_index) + " NIC " + std::to_string(nic) +
                            " is outside the cluster");
  int group = node_index / fabric.nodes_per_leaf;
  if (fabric.kind == FabricKind::fat_tree) return group;
  return nic * ceil_div(nodes, fabric.nodes_per_leaf) + group;  // rail `nic` owns a contiguous block of leaves
}

int ClusterSpec::leaf_count() const {
  int per_rail = ceil_div(nodes, fabric.nodes_per_leaf);
  return fabric.kind == FabricKind::fat_tree ? per_rail : per_rail * node.nics.count;
}

// ---------------------------------------------------------------------------------------------------------
// Parsing
namespace {

// A bad value as it appears in the message: compact JSON, cut short so the error stays one readable line.
std::string show(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

std::string join(std::initializer_list<const char*> words) {
  std::string out;
  for (const char* w : words) out += (out.empty() ? "" : ", ") + std::string(w);
  return out;
}

// Walks one document, remembering the file name so that every check can throw a complete ConfigError.
class Parser {
 public:
  explicit Parser(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void fail(const std::string& path, const std::string& msg) const {
    throw ConfigError(file_, path.empty() ? "(root)" : path, msg);
  }

  static std::string key_path(const std::string& path, const std::string& key) {
    return path.empty() ? key : path + "." + key;
  }
  static std::string index_path(const std::string& path, std::size_t i) { return path + "[" + std::to_string(i) + "]"; }

  // `j` must be an object whose keys are all in `allowed`.
  void object(const json& j, const std::string& path, std::initializer_list<const char*> allowed) const {
    if (!j.is_object()) fail(path, "expected an object, got " + show(j));
    for (auto it = j.begin(); it != j.end(); ++it) {
      const std::string& key = it.key();  // not a structured binding: clang 14 (the fuzzer build) cannot capture one
      if (std::none_of(allowed.begin(), allowed.end(), [&](const char* a) { return key == a; }))
        fail(key_path(path, key), "unknown key; allowed keys: " + join(allowed));
    }
  }

  const json* optional(const json& obj, const char* key) const {
    auto it = obj.find(key);
    return it == obj.end() ? nullptr : &*it;
  }

  const json& required(const json& obj, const std::string& path, const char* key, const std::string& what) const {
    const json* v = optional(obj, key);
    if (!v) fail(key_path(path, key), "missing required field (expected " + what + ")");
    return *v;
  }

  double number(const json& v, const std::string& path, double min, bool min_inclusive, const std::string& what,
                double max = kMaxHardwareQuantity) const {
    if (!v.is_number()) fail(path, "expected " + what + ", got " + show(v));
    double x = v.get<double>();
    if (!std::isfinite(x) || x < min || (!min_inclusive && x == min) || x > max)
      fail(path, "expected " + what + ", got " + show(v));
    return x;
  }

  // Capacities (GiB, TiB), bandwidths (GB/s, Gbit/s) and peak TFLOP/s: within [0.001, 1e7] so that no transfer or
  // kernel time becomes zero, infinite or subnormal in the simulator (a link of 1e308 GB/s aborted SimGrid).
  double positive(const json& obj, const std::string& path, const char* key) const {
    const std::string what = "a positive number";
    const json& v = required(obj, path, key, what);
    const double x = number(v, key_path(path, key), 0.0, false, what, INFINITY);
    if (x < kMinHardwareQuantity || x > kMaxHardwareQuantity)
      fail(key_path(path, key), "expected a number in [0.001, 10000000], got " + show(v));
    return x;
  }

  int integer(const json& v, const std::string& path, int min, const std::string& what) const {
    bool integral = v.is_number_integer() || (v.is_number_float() && std::trunc(v.get<double>()) == v.get<double>());
    if (!integral) fail(path, "expected " + what + ", got " + show(v));
    double x = v.get<double>();
    if (x < min || x > INT_MAX) fail(path, "expected " + what + ", got " + show(v));
    return static_cast<int>(x);
  }

  int positive_int(const json& obj, const std::string& path, const char* key) const {
    const std::string what = "a positive integer";
    return integer(required(obj, path, key, what), key_path(path, key), 1, what);
  }

  std::string string(const json& v, const std::string& path) const {
    if (!v.is_string() || v.get<std::string>().empty()) fail(path, "expected a non-empty string, got " + show(v));
    return v.get<std::string>();
  }

  const json& array(const json& v, const std::string& path, const std::string& of) const {
    if (!v.is_array()) fail(path, "expected an array of " + of + ", got " + show(v));
    return v;
  }

  // A list of local indices in [0, count).
  std::vector<int> indices(const json& v, const std::string& path, int count, const char* device) const {
    std::vector<int> out;
    const std::string range = std::string("a ") + device + " index in 0.." + std::to_string(count - 1);
    array(v, path, std::string(device) + " indices");
    for (std::size_t i = 0; i < v.size(); ++i) {
      int x = integer(v[i], index_path(path, i), 0, range);
      if (x >= count) fail(index_path(path, i), "expected " + range + ", got " + show(v[i]));
      out.push_back(x);
    }
    return out;
  }

  ClusterSpec cluster(const json& j) const {
    object(j, "", {"name", "description", "nodes", "node", "fabric"});
    ClusterSpec c;
    c.name = string(required(j, "", "name", "a non-empty string"), "name");
    if (const json* d = optional(j, "description")) {
      if (!d->is_string()) fail("description", "expected a string, got " + show(*d));
      c.description = d->get<std::string>();
    }
    c.nodes = positive_int(j, "", "nodes");
    c.node = node(required(j, "", "node", "an object"), "node");
    if (static_cast<long long>(c.nodes) * c.node.gpus > kMaxClusterGpus)
      fail("nodes", "expected at most " + std::to_string(kMaxClusterGpus) + " GPUs in total, got " +
                        std::to_string(c.nodes) + " nodes of " + std::to_string(c.node.gpus) + " GPUs");
    if (const json* f = optional(j, "fabric")) c.fabric = fabric(*f, "fabric");
    return c;
  }

  NodeSpec node(const json& j, const std::string& p) const {
    object(j, p, {"gpus", "gpu", "intra_node", "host_memory", "pcie", "nics", "ssd", "compute_slots"});
    NodeSpec n;
    n.gpus = positive_int(j, p, "gpus");
    if (optional(j, "compute_slots")) {
      n.compute_slots = positive_int(j, p, "compute_slots");
      if (n.compute_slots > 4096)
        fail(key_path(p, "compute_slots"),
             "expected at most 4096 compute slots, got " + std::to_string(n.compute_slots));
    }
    if (n.gpus > kMaxGpusPerNode)
      fail(key_path(p, "gpus"),
           "expected at most " + std::to_string(kMaxGpusPerNode) + " GPUs per node, got " + std::to_string(n.gpus));
    n.gpu = gpu(required(j, p, "gpu", "an object"), key_path(p, "gpu"));
    n.intra_node = intra_node(required(j, p, "intra_node", "an object"), key_path(p, "intra_node"));
    {
      const std::string hp = key_path(p, "host_memory");
      const json& h = required(j, p, "host_memory", "an object");
      object(h, hp, {"capacity_gib", "gbytes_per_s"});
      n.host_memory.capacity_bytes = positive(h, hp, "capacity_gib") * kGiB;
      n.host_memory.bytes_per_s = positive(h, hp, "gbytes_per_s") * kGB;
    }
    // NICs before PCIe: switches list NIC indices, which need the NIC count.
    n.nics = nics(required(j, p, "nics", "an object"), key_path(p, "nics"), n.gpus);
    n.pcie = pcie(required(j, p, "pcie", "an object"), key_path(p, "pcie"), n.gpus, n.nics.count);
    if (const json* s = optional(j, "ssd")) {
      const std::string sp = key_path(p, "ssd");
      object(*s, sp, {"capacity_tib", "read_gbytes_per_s", "write_gbytes_per_s"});
      n.ssd.capacity_bytes = positive(*s, sp, "capacity_tib") * kTiB;
      n.ssd.read_bytes_per_s = positive(*s, sp, "read_gbytes_per_s") * kGB;
      n.ssd.write_bytes_per_s = positive(*s, sp, "write_gbytes_per_s") * kGB;
    }
    return n;
  }

  // Billions of work units (flop for GEMMs and attention, bytes for the rest) per second, by kernel class: one
  // number, or [[work, rate], ...] measured at several sizes. Absent: no classes.
  std::map<std::string, RateCurve> rate_curves(const json& j, const std::string& p, const char* key) const {
    std::map<std::string, RateCurve> curves;
    const json* rates = optional(j, key);
    if (!rates) return curves;
    const std::string rp = key_path(p, key);
    if (!rates->is_object()) fail(rp, "expected an object of work per second by kernel class, got " + show(*rates));
    for (const auto& [name, value] : rates->items()) {
      if (!value.is_array()) {
        curves[name] = {{0.0, positive(*rates, rp, name.c_str()) * 1e9}};
        continue;
      }
      const std::string cp = key_path(rp, name);
      if (value.empty()) fail(cp, "expected a positive number or a non-empty list of [work, rate] pairs, got []");
      for (std::size_t i = 0; i < value.size(); ++i) {
        const json& point = value[i];
        const bool ok = point.is_array() && point.size() == 2 && point[0].is_number() && point[1].is_number() &&
                        point[0].get<double>() > 0 && point[1].get<double>() > 0 &&
                        std::isfinite(point[0].get<double>()) && std::isfinite(point[1].get<double>());
        if (!ok)
          fail(cp + "[" + std::to_string(i) + "]",
               "expected a [work, rate] pair of positive numbers, got " + show(point));
        curves[name][point[0].get<double>()] = point[1].get<double>() * 1e9;
      }
    }
    return curves;
  }

  GpuSpec gpu(const json& j, const std::string& p) const {
    object(j, p, {"model", "hbm_gib", "hbm_gbytes_per_s", "peak_tflops", "kernel_gwork_per_s",
                  "kernel_hot_gwork_per_s", "kernel_cache_mib", "sms"});
    GpuSpec g;
    g.model = string(required(j, p, "model", "a non-empty string"), key_path(p, "model"));
    g.hbm_bytes = positive(j, p, "hbm_gib") * kGiB;
    g.hbm_bytes_per_s = positive(j, p, "hbm_gbytes_per_s") * kGB;
    if (optional(j, "sms")) {
      const double sms = positive(j, p, "sms");
      if (sms != std::floor(sms) || sms > 100000)
        fail(key_path(p, "sms"), "expected a whole number of streaming multiprocessors, got " + show(j["sms"]));
      g.sms = static_cast<int>(sms);
    }
    const std::string tp = key_path(p, "peak_tflops");
    const json& t = required(j, p, "peak_tflops", "an object of dense TFLOP/s per dtype");
    object(t, tp, {"fp32", "tf32", "fp16", "bf16", "fp8"});
    // fp8 is optional (A100 has none); the others are required so that no model asks for a missing peak.
    for (Dtype d : {Dtype::fp32, Dtype::tf32, Dtype::fp16, Dtype::bf16, Dtype::fp8}) {
      if (d == Dtype::fp8 && !optional(t, "fp8")) continue;
      g.peak_flop_per_s[d] = positive(t, tp, to_string(d)) * kTera;
    }
    g.kernel_rates = rate_curves(j, p, "kernel_gwork_per_s");
    g.kernel_hot_rates = rate_curves(j, p, "kernel_hot_gwork_per_s");
    if (optional(j, "kernel_cache_mib")) g.kernel_cache_bytes = positive(j, p, "kernel_cache_mib") * kMiB;
    for (const auto& [name, curve] : g.kernel_hot_rates)
      if (!g.kernel_rates.count(name))
        fail(key_path(key_path(p, "kernel_hot_gwork_per_s"), name),
             "expected a class of \"kernel_gwork_per_s\" too: a hot rate is the cold one's on cached operands");
    if (!g.kernel_hot_rates.empty() && g.kernel_cache_bytes <= 0)
      fail(key_path(p, "kernel_hot_gwork_per_s"), "expected \"kernel_cache_mib\" beside it: the cache the hot rates' "
                                                 "operands stay in");
    return g;
  }

  IntraNodeSpec intra_node(const json& j, const std::string& p) const {
    if (!j.is_object()) fail(p, "expected an object, got " + show(j));
    const json& k = required(j, p, "kind", "\"nvswitch\" or \"pcie_only\"");
    IntraNodeSpec s;
    if (k == "nvswitch") {
      object(j, p, {"kind", "gbytes_per_s_per_gpu"});
      s.kind = IntraNodeKind::nvswitch;
      s.bytes_per_s_per_gpu = positive(j, p, "gbytes_per_s_per_gpu") * kGB;
    } else if (k == "pcie_only") {
      object(j, p, {"kind"});  // no GPU-to-GPU link other than PCIe: a bandwidth here would be ignored
      s.kind = IntraNodeKind::pcie_only;
    } else {
      fail(key_path(p, "kind"), "expected one of \"nvswitch\", \"pcie_only\", got " + show(k));
    }
    return s;
  }

  NicSpec nics(const json& j, const std::string& p, int gpus) const {
    object(j, p, {"count", "gbits_per_s", "gpus", "transport", "pxn"});
    NicSpec s;
    s.count = positive_int(j, p, "count");
    if (optional(j, "pxn")) {
      if (!j["pxn"].is_boolean()) fail(key_path(p, "pxn"), "expected true or false, got " + j["pxn"].dump());
      s.pxn = j["pxn"].get<bool>();
    }
    if (optional(j, "transport")) {
      const std::string t = string(j["transport"], key_path(p, "transport"));
      if (t != "rdma" && t != "efa") fail(key_path(p, "transport"), "expected \"rdma\" or \"efa\", got \"" + t + "\"");
      s.transport = t == "efa" ? NicTransport::efa : NicTransport::rdma;
    }
    if (gpus % s.count != 0)
      fail(key_path(p, "count"), "NICs that do not divide the GPUs: expected a NIC count that divides the " +
                                     std::to_string(gpus) + " GPUs of a node, got " + std::to_string(s.count));
    s.bytes_per_s = gbits_to_bytes_per_s(positive(j, p, "gbits_per_s"));
    const std::string gp = key_path(p, "gpus");
    const json& lists = array(required(j, p, "gpus", "one list of GPU indices per NIC"), gp, "GPU lists");
    if (static_cast<int>(lists.size()) != s.count)
      fail(gp, "expected one GPU list per NIC (" + std::to_string(s.count) + " lists), got " +
                   std::to_string(lists.size()));
    std::vector<int> nic_of(static_cast<std::size_t>(gpus), -1);
    for (std::size_t n = 0; n < lists.size(); ++n) {
      s.gpus.push_back(indices(lists[n], index_path(gp, n), gpus, "GPU"));
      for (std::size_t i = 0; i < s.gpus[n].size(); ++i) {
        int g = s.gpus[n][i];
        int& owner = nic_of[static_cast<std::size_t>(g)];
        if (owner != -1)
          fail(index_path(index_path(gp, n), i), "GPU " + std::to_string(g) + " is served by two NICs (" +
                                                     std::to_string(owner) + " and " + std::to_string(n) +
                                                     "); each GPU needs exactly one");
        owner = static_cast<int>(n);
      }
    }
    for (int g = 0; g < gpus; ++g)
      if (nic_of[static_cast<std::size_t>(g)] == -1)
        fail(gp, "GPU " + std::to_string(g) + " is served by no NIC, so it has no route off the node");
    const std::size_t share = static_cast<std::size_t>(gpus / s.count);
    for (std::size_t n = 0; n < s.gpus.size(); ++n)
      if (s.gpus[n].size() != share)
        fail(index_path(gp, n), "expected " + std::to_string(share) + " GPUs (the " + std::to_string(gpus) +
                                    " GPUs shared evenly by " + std::to_string(s.count) + " NICs), got " +
                                    std::to_string(s.gpus[n].size()));
    return s;
  }

  PcieSpec pcie(const json& j, const std::string& p, int gpus, int nic_count) const {
    object(j, p, {"generation", "lanes", "switches"});
    PcieSpec s;
    s.generation = integer(required(j, p, "generation", "3, 4, 5 or 6"), key_path(p, "generation"), 0,
                           "a PCIe generation 3, 4, 5 or 6");
    if (s.generation < 3 || s.generation > 6)
      fail(key_path(p, "generation"), "expected a PCIe generation 3, 4, 5 or 6, got " + std::to_string(s.generation));
    s.lanes = integer(required(j, p, "lanes", "1, 2, 4, 8 or 16"), key_path(p, "lanes"), 0, "1, 2, 4, 8 or 16 lanes");
    if (s.lanes != 1 && s.lanes != 2 && s.lanes != 4 && s.lanes != 8 && s.lanes != 16)
      fail(key_path(p, "lanes"), "expected 1, 2, 4, 8 or 16 lanes, got " + std::to_string(s.lanes));
    const std::string sp = key_path(p, "switches");
    const json& list = array(required(j, p, "switches", "an array of switches"), sp, "switches");
    if (list.empty()) fail(sp, "expected at least one PCIe switch, got []");
    std::vector<int> gpu_sw(static_cast<std::size_t>(gpus), -1), nic_sw(static_cast<std::size_t>(nic_count), -1);
    for (std::size_t w = 0; w < list.size(); ++w) {
      const std::string wp = index_path(sp, w);
      object(list[w], wp, {"gpus", "nics"});
      PcieSwitchSpec sw;
      sw.gpus = indices(required(list[w], wp, "gpus", "an array of GPU indices"), key_path(wp, "gpus"), gpus, "GPU");
      sw.nics =
          indices(required(list[w], wp, "nics", "an array of NIC indices"), key_path(wp, "nics"), nic_count, "NIC");
      claim(sw.gpus, gpu_sw, static_cast<int>(w), key_path(wp, "gpus"), "GPU");
      claim(sw.nics, nic_sw, static_cast<int>(w), key_path(wp, "nics"), "NIC");
      s.switches.push_back(std::move(sw));
    }
    for (int g = 0; g < gpus; ++g)
      if (gpu_sw[static_cast<std::size_t>(g)] == -1)
        fail(sp, "GPU " + std::to_string(g) + " is behind no PCIe switch; every GPU needs exactly one");
    return s;
  }

  // Records that `devices` sit behind switch `w`; a device may sit behind only one switch.
  void claim(const std::vector<int>& devices, std::vector<int>& owner, int w, const std::string& path,
             const char* device) const {
    for (std::size_t i = 0; i < devices.size(); ++i) {
      int& o = owner[static_cast<std::size_t>(devices[i])];
      if (o != -1)
        fail(index_path(path, i), std::string(device) + " " + std::to_string(devices[i]) +
                                      " is already behind PCIe switch " + std::to_string(o) +
                                      "; a device sits behind exactly one switch");
      o = w;
    }
  }

  FabricSpec fabric(const json& j, const std::string& p) const {
    object(j, p, {"kind", "nodes_per_leaf", "oversubscription", "hop_latency_us"});
    FabricSpec f;
    if (const json* k = optional(j, "kind")) {
      if (*k == "rail-optimized")
        f.kind = FabricKind::rail_optimized;
      else if (*k == "fat-tree")
        f.kind = FabricKind::fat_tree;
      else
        fail(key_path(p, "kind"), "expected one of \"rail-optimized\", \"fat-tree\", got " + show(*k));
    }
    if (const json* v = optional(j, "nodes_per_leaf"))
      f.nodes_per_leaf = integer(*v, key_path(p, "nodes_per_leaf"), 1, "an integer >= 1");
    if (const json* v = optional(j, "oversubscription"))
      f.oversubscription =
          number(*v, key_path(p, "oversubscription"), 1.0, true, "a number in [1, 1000000] (1 = non-blocking)", 1e6);
    if (const json* v = optional(j, "hop_latency_us"))
      f.hop_latency_s =
          number(*v, key_path(p, "hop_latency_us"), 0.0, true, "a number in [0, 1000000] (at most a second)", 1e6) *
          kMicro;
    return f;
  }

 private:
  std::string file_;
};

const char* fabric_kind_name(FabricKind k) {
  return k == FabricKind::fat_tree ? "fat-tree" : "rail-optimized";
}

}  // namespace

ClusterSpec parse_cluster(const json& j, const std::string& file) {
  return Parser(file).cluster(j);
}

ClusterSpec load_cluster_file(const std::string& path) {
  return parse_cluster(read_json_file(path), path);
}

json kernel_rates_to_json(const std::map<std::string, RateCurve>& curves) {
  json rates = json::object();
  for (const auto& [name, curve] : curves) {
    if (curve.size() == 1 && curve.begin()->first == 0) {
      rates[name] = curve.begin()->second / 1e9;
      continue;
    }
    rates[name] = json::array();
    for (const auto& [work, rate] : curve) rates[name].push_back({work, rate / 1e9});
  }
  return rates;
}

json cluster_to_json(const ClusterSpec& c) {
  const NodeSpec& n = c.node;
  json peak = json::object();
  for (const auto& [d, flops] : n.gpu.peak_flop_per_s) peak[to_string(d)] = flops / kTera;
  json intra = {{"kind", n.intra_node.kind == IntraNodeKind::nvswitch ? "nvswitch" : "pcie_only"}};
  if (n.intra_node.kind == IntraNodeKind::nvswitch)
    intra["gbytes_per_s_per_gpu"] = n.intra_node.bytes_per_s_per_gpu / kGB;
  json switches = json::array();
  for (const auto& s : n.pcie.switches) switches.push_back({{"gpus", s.gpus}, {"nics", s.nics}});
  json node = {
      {"gpus", n.gpus},
      {"gpu",
       {{"model", n.gpu.model},
        {"hbm_gib", n.gpu.hbm_bytes / kGiB},
        {"hbm_gbytes_per_s", n.gpu.hbm_bytes_per_s / kGB},
        {"peak_tflops", peak}}},
      {"intra_node", intra},
      {"host_memory",
       {{"capacity_gib", n.host_memory.capacity_bytes / kGiB}, {"gbytes_per_s", n.host_memory.bytes_per_s / kGB}}},
      {"pcie", {{"generation", n.pcie.generation}, {"lanes", n.pcie.lanes}, {"switches", switches}}},
      {"nics", {{"count", n.nics.count}, {"gbits_per_s", n.nics.bytes_per_s * 8.0 / 1e9}, {"gpus", n.nics.gpus}}},
  };
  if (n.gpu.sms > 0) node["gpu"]["sms"] = n.gpu.sms;
  if (n.nics.transport == NicTransport::efa) node["nics"]["transport"] = "efa";
  if (!n.nics.pxn) node["nics"]["pxn"] = false;
  if (!n.gpu.kernel_rates.empty()) node["gpu"]["kernel_gwork_per_s"] = kernel_rates_to_json(n.gpu.kernel_rates);
  if (!n.gpu.kernel_hot_rates.empty())
    node["gpu"]["kernel_hot_gwork_per_s"] = kernel_rates_to_json(n.gpu.kernel_hot_rates);
  if (n.gpu.kernel_cache_bytes > 0) node["gpu"]["kernel_cache_mib"] = n.gpu.kernel_cache_bytes / kMiB;
  if (n.compute_slots > 0) node["compute_slots"] = n.compute_slots;
  if (n.ssd.capacity_bytes > 0)
    node["ssd"] = {{"capacity_tib", n.ssd.capacity_bytes / kTiB},
                   {"read_gbytes_per_s", n.ssd.read_bytes_per_s / kGB},
                   {"write_gbytes_per_s", n.ssd.write_bytes_per_s / kGB}};
  json j = {{"name", c.name},
            {"nodes", c.nodes},
            {"node", node},
            {"fabric",
             {{"kind", fabric_kind_name(c.fabric.kind)},
              {"nodes_per_leaf", c.fabric.nodes_per_leaf},
              {"oversubscription", c.fabric.oversubscription},
              {"hop_latency_us", c.fabric.hop_latency_s / kMicro}}}};
  if (!c.description.empty()) j["description"] = c.description;
  return j;
}

// ---------------------------------------------------------------------------------------------------------
// Generator: DGX-like nodes from published specifications. Each preset is the node of a file in topologies/
// (dgx-a100-80g, dgx-a100-40g, dgx-h100, dgx-h200, hgx-h800) whose description cites each figure's source and says
// which figures are assumed.
namespace {

struct GpuPreset {
  const char* flag;
  const char* model;
  double hbm_gib, hbm_gbytes_per_s;
  double fp32, tf32, fp16, bf16, fp8;  // dense TFLOP/s; fp8 0 = not supported
  double nvlink_gbytes_per_s_per_gpu;
  int pcie_generation;
  double host_gib, host_gbytes_per_s;  // host bandwidth: one socket's DDR channels (DDR4-3200 x8, DDR5-4800 x8)
  double ssd_tib, ssd_read_gbytes_per_s, ssd_write_gbytes_per_s;  // the NVMe RAID-0 data volume
  double nic_gbits_per_s;  // each compute-fabric NIC: ConnectX-6 HDR on DGX A100, ConnectX-7 NDR on the Hopper nodes
  int sms;                 // streaming multiprocessors: 108 on A100, 132 on the SXM5 Hopper parts (H100, H800, H200)
};

constexpr GpuPreset kPresets[] = {
    {"a100-80g", "A100-SXM4-80GB", 80, 2039, 19.5, 156, 312, 312, 0, 300, 4, 2048, 200, 15, 25, 10, 200, 108},
    {"a100-40g", "A100-SXM4-40GB", 40, 1555, 19.5, 156, 312, 312, 0, 300, 4, 1024, 200, 15, 25, 10, 200, 108},
    {"h100", "H100-SXM5-80GB", 80, 3352, 67, 494, 989, 989, 1979, 450, 5, 2048, 300, 28, 50, 20, 400, 132},
    {"h200", "H200-SXM5-141GB", 141, 4800, 67, 494, 989, 989, 1979, 450, 5, 2048, 300, 28, 50, 20, 400, 132},
    {"h800", "H800-SXM5-80GB", 80, 3352, 67, 494, 989, 989, 1979, 200, 5, 2048, 300, 30, 50, 20, 400, 132},
};

// "a100-80g, a100-40g, h100, h200, h800": the names --gpu accepts, for its error message.
std::string preset_names() {
  std::string out;
  for (const auto& p : kPresets) out += (out.empty() ? "" : ", ") + std::string(p.flag);
  return out;
}

}  // namespace

ClusterSpec generate_cluster(const ClusterGeneratorOptions& o) {
  auto flag_error = [](const char* flag, const std::string& msg) { return ConfigError("", flag, msg); };
  const GpuPreset* preset = nullptr;
  for (const auto& p : kPresets)
    if (o.gpu == p.flag) preset = &p;
  if (!preset) throw flag_error("--gpu", "expected one of " + preset_names() + ", got \"" + o.gpu + "\"");
  if (o.nodes < 1) throw flag_error("--nodes", "expected a positive integer, got " + std::to_string(o.nodes));
  const int g = o.gpus_per_node, k = o.nics_per_node;
  if (g < 1) throw flag_error("--gpus-per-node", "expected a positive integer, got " + std::to_string(g));
  if (k < 1 || g % k != 0)
    throw flag_error("--nics-per-node", "NICs that do not divide the GPUs: expected a NIC count that divides the " +
                                            std::to_string(g) + " GPUs of a node, got " + std::to_string(k));
  const double nic_gbits_per_s = o.nic_gbits_per_s.value_or(preset->nic_gbits_per_s);
  if (!(nic_gbits_per_s >= kMinHardwareQuantity && nic_gbits_per_s <= kMaxHardwareQuantity))
    throw flag_error("--nic-gbps", "expected a number in [0.001, 10000000], got " + std::to_string(nic_gbits_per_s));
  // Refused before the node is built: a node of a hundred million GPUs would fill memory first.
  if (g > kMaxGpusPerNode)
    throw flag_error("--gpus-per-node", "expected at most " + std::to_string(kMaxGpusPerNode) + " GPUs per node, got " +
                                            std::to_string(g));
  if (static_cast<long long>(o.nodes) * g > kMaxClusterGpus)
    throw flag_error("--nodes", "expected at most " + std::to_string(kMaxClusterGpus) + " GPUs in total, got " +
                                    std::to_string(o.nodes) + " nodes of " + std::to_string(g) + " GPUs");

  ClusterSpec c;
  c.name = "generated-" + std::to_string(o.nodes) + "x" + std::to_string(g) + "-" + o.gpu;
  c.nodes = o.nodes;
  NodeSpec& n = c.node;
  n.gpus = g;
  n.gpu.model = preset->model;
  n.gpu.sms = preset->sms;
  n.gpu.hbm_bytes = preset->hbm_gib * kGiB;
  n.gpu.hbm_bytes_per_s = preset->hbm_gbytes_per_s * kGB;
  n.gpu.peak_flop_per_s = {{Dtype::fp32, preset->fp32 * kTera},
                           {Dtype::tf32, preset->tf32 * kTera},
                           {Dtype::fp16, preset->fp16 * kTera},
                           {Dtype::bf16, preset->bf16 * kTera}};
  if (preset->fp8 > 0) n.gpu.peak_flop_per_s[Dtype::fp8] = preset->fp8 * kTera;
  n.intra_node = {IntraNodeKind::nvswitch, preset->nvlink_gbytes_per_s_per_gpu * kGB};
  n.host_memory = {preset->host_gib * kGiB, preset->host_gbytes_per_s * kGB};
  n.pcie.generation = preset->pcie_generation;
  n.pcie.lanes = 16;
  // One switch per pair of GPUs, as on DGX boards; each NIC sits behind the switch of the first GPU it serves.
  for (int s = 0; s < (g + 1) / 2; ++s) {
    PcieSwitchSpec sw;
    for (int x = 2 * s; x < std::min(g, 2 * s + 2); ++x) sw.gpus.push_back(x);
    n.pcie.switches.push_back(sw);
  }
  n.nics.count = k;
  n.nics.bytes_per_s = gbits_to_bytes_per_s(nic_gbits_per_s);
  const int share = g / k;
  for (int nic = 0; nic < k; ++nic) {
    std::vector<int> served;
    for (int x = nic * share; x < (nic + 1) * share; ++x) served.push_back(x);
    n.nics.gpus.push_back(served);
    n.pcie.switches[static_cast<std::size_t>(nic * share / 2)].nics.push_back(nic);
  }
  n.ssd = {preset->ssd_tib * kTiB, preset->ssd_read_gbytes_per_s * kGB, preset->ssd_write_gbytes_per_s * kGB};
  // Validate exactly as a file would be (errors then name "<flags>"), e.g. an absurd total GPU count.
  return parse_cluster(cluster_to_json(c), "");
}

double rate_at(const RateCurve& curve, double work) {
  if (curve.empty()) return 0;
  const auto above = curve.lower_bound(work);
  if (above == curve.begin()) return above->second;
  if (above == curve.end()) return std::prev(above)->second;
  const auto below = std::prev(above);
  const double t = (std::log(work) - std::log(below->first)) / (std::log(above->first) - std::log(below->first));
  return below->second + t * (above->second - below->second);
}

}  // namespace moesys::core
