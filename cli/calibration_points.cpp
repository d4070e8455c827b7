#include "cli/calibration_points.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "cli/args.hpp"
#include "cli/nccl_tests_ops.hpp"
#include "core/error.hpp"
#include "core/json_input.hpp"
#include "sim/collectives.hpp"
#include "sim/isolated_run.hpp"
#include "sim/sim_runtime.hpp"
#include "sim/simulation.hpp"

namespace moesys::cli {

namespace {

const std::set<std::string> kCollectives = {"allreduce", "allgather", "reduce_scatter", "alltoall"};
const std::set<std::string> kModelled = {"allreduce",    "allgather",   "reduce_scatter", "alltoall",
                                         "p2p_nvlink",   "pcie_h2d",    "pcie_d2h",       "pcie_duplex",
                                         "gemm",         "gemm_grouped", "ep_dispatch",   "ep_combine",
                                         "overlap"};
bool is_ep(const std::string& category) { return category == "ep_dispatch" || category == "ep_combine"; }
// metric -> unit it must come in.
const std::map<std::string, std::string> kUnits = {
    {"busbw", "GB/s"}, {"time", "us"}, {"bandwidth", "GB/s"}, {"TFLOPS", "TFLOP/s"}};

core::Dtype dtype_of(const std::string& s) {
  if (s == "fp8") return core::Dtype::fp8;
  if (s == "fp16") return core::Dtype::fp16;
  if (s == "fp32") return core::Dtype::fp32;
  return core::Dtype::bf16;
}

sim::CollectiveOp op_of(const std::string& category) {
  if (category == "allgather") return sim::CollectiveOp::all_gather;
  if (category == "reduce_scatter") return sim::CollectiveOp::reduce_scatter;
  if (category == "alltoall") return sim::CollectiveOp::all_to_all;
  return sim::CollectiveOp::all_reduce;
}

// A forced software.algorithm must serve the operation on the point's machine: NVLS needs the NVSwitch SHARP of the
// Hopper nodes, the copy-engine algorithm one node.
template <class Bad>
void check_algorithm(const CalibrationPoint& c, sim::CollectiveOp op, const Bad& bad) {
  if (c.algorithm.empty()) return;
  const std::string family = core::gpu_family_of(c.gpu_preset);
  try {
    const core::CollectiveAlgo a = sim::resolve_algo(op, core::parse_collective_algo(c.algorithm));
    if ((a == core::CollectiveAlgo::nvls || a == core::CollectiveAlgo::nvls_tree) && family == "a100")
      throw std::invalid_argument("NVLS needs NVLink SHARP, which A100 nodes do not have");
    if (a == core::CollectiveAlgo::copy_engine && c.nodes > 1)
      throw std::invalid_argument("algorithm 'ce' serves a group inside one node, not one across " +
                                  std::to_string(c.nodes) + " nodes");
  } catch (const std::invalid_argument& e) {
    throw bad("software.algorithm", e.what());
  }
}

// An overlap point's collective beside its GEMM (size.collective, size.bytes) and how the two were issued
// (software.schedule); its GEMM is read as a gemm point's.
template <class Bad>
void parse_overlap(CalibrationPoint& c, const nlohmann::json& p, const Bad& bad) {
  const auto& size = p.at("size");
  c.overlap_collective = size.value("collective", std::string());
  if (c.overlap_collective != "allreduce" && c.overlap_collective != "allgather" &&
      c.overlap_collective != "reduce_scatter" && c.overlap_collective != "alltoall")
    throw bad("size.collective", "expected allreduce, allgather, reduce_scatter or alltoall, got \"" +
                                     c.overlap_collective + "\"");
  if (!size.contains("bytes") || !size["bytes"].is_number() || !(size["bytes"].get<double>() > 0))
    throw bad("size.bytes", "expected the collective's size in bytes (nccl-tests' size: the whole buffer)");
  c.size_bytes = size["bytes"].get<double>();
  if (c.gpus_per_node * c.nodes < 2) throw bad("hardware", "a collective needs at least two GPUs");
  const std::string schedule = p.at("software").value("schedule", std::string());
  if (schedule != "overlapped" && schedule != "sequential")
    throw bad("software.schedule", "expected \"overlapped\" (the collective and the GEMM on two streams at once) or "
                                   "\"sequential\" (the GEMM, then the collective), got \"" + schedule + "\"");
  c.overlapped = schedule == "overlapped";
  check_algorithm(c, op_of(c.overlap_collective), bad);
  if (c.metric != "time") throw bad("metric", "an overlap point is measured as time (us), not " + c.metric);
}

CalibrationPoint parse_point(const nlohmann::json& p, const std::string& file, const std::string& path) {
  CalibrationPoint c;
  c.id = p.at("id").get<std::string>();
  auto bad = [&](const std::string& field, const std::string& what) {
    return core::ConfigError(file, path + "." + field, "point " + c.id + ": " + what);
  };
  c.category = p.at("category").get<std::string>();
  c.metric = p.at("metric").get<std::string>();
  c.unit = p.at("unit").get<std::string>();
  c.measured = p.at("value").get<double>();
  if (!p.contains("source") || !p["source"].is_string() || p["source"].get<std::string>().empty())
    throw bad("source", "expected the URL the measurement comes from");
  const std::string source = p["source"].get<std::string>();
  c.source = source;
  if (p.contains("excluded")) c.excluded = p["excluded"].get<std::string>();
  const auto& hw = p.at("hardware");
  c.gpu_preset = hw.value("gpu_preset", std::string());
  if (core::gpu_family_of(c.gpu_preset).empty())
    throw bad("hardware.gpu_preset",
              "expected one of a100-80g, a100-40g, h100, h200, h800, got \"" + c.gpu_preset + "\"");
  if (!(c.measured > 0)) throw bad("value", "expected a positive measurement");
  const auto unit = kUnits.find(c.metric);
  const bool library_metric = c.metric == "bottleneck_bandwidth" || c.metric == "rdma_bandwidth" ||
                              c.metric == "nvl_bandwidth" || c.metric == "latency";
  if (unit == kUnits.end() && !library_metric) throw bad("metric", "unknown metric \"" + c.metric + "\"");
  if (unit != kUnits.end() && unit->second != c.unit)
    throw bad("unit", "metric " + c.metric + " is given in " + unit->second + ", got \"" + c.unit + "\"");
  if (!kModelled.count(c.category)) throw bad("category", "unknown category \"" + c.category + "\"");
  if (!c.excluded.empty()) return c;
  if (library_metric && !is_ep(c.category))
    throw bad("metric", "metric " + c.metric + " is not one of busbw, time, bandwidth, TFLOPS");
  if (is_ep(c.category) && c.metric != "latency" && c.metric != "bandwidth" && c.metric != "bottleneck_bandwidth" &&
      c.metric != "rdma_bandwidth" && c.metric != "nvl_bandwidth")
    throw bad("metric", "a dispatch/combine point is measured as latency, bandwidth, bottleneck_bandwidth, "
                        "rdma_bandwidth or nvl_bandwidth, not " + c.metric);
  if (is_ep(c.category) && c.unit != (c.metric == "latency" ? "us" : "GB/s"))
    throw bad("unit", "metric " + c.metric + " is given in " + (c.metric == "latency" ? "us" : "GB/s") + ", got \"" +
                          c.unit + "\"");
  auto int_of = [&](const char* key, int fallback) {
    return hw.contains(key) && hw[key].is_number_integer() ? hw[key].get<int>() : fallback;
  };
  c.nodes = int_of("nodes", 1);
  c.gpus_per_node = int_of("gpus_per_node", 1);
  c.nics_per_node = int_of("nics_per_node", 0);
  c.nic_gbps = hw.contains("nic_gbps") && hw["nic_gbps"].is_number() ? hw["nic_gbps"].get<double>() : 0;
  const std::string transport = hw.value("nic_transport", std::string("rdma"));
  if (transport != "rdma" && transport != "efa")
    throw bad("hardware.nic_transport", "expected \"rdma\" or \"efa\", got \"" + transport + "\"");
  c.efa = transport == "efa";
  if (c.nodes > 1 && (c.nics_per_node < 1 || !(c.nic_gbps > 0)))
    throw bad("hardware", "a multi-node point needs hardware.nics_per_node and hardware.nic_gbps");
  const auto& sw = p.at("software");
  c.algorithm = sw.value("algorithm", std::string());
  c.tool = sw.value("tool", std::string());
  const std::string harness = sw.value("harness", std::string());
  if (harness == "cuda_graph")
    c.harness = CalibrationPoint::Harness::cuda_graph;
  else if (harness == "torch.distributed")
    c.harness = CalibrationPoint::Harness::framework;
  else if (!harness.empty())
    throw bad("software.harness", "expected \"cuda_graph\" or \"torch.distributed\" (or no harness: nccl-tests' "
                                  "loop of launches), got \"" + harness + "\"");
  if (sw.contains("gpus_per_thread")) {
    const auto& g = sw["gpus_per_thread"];
    if (!g.is_number_integer() || g.get<int>() < 1 || g.get<int>() > c.gpus_per_node)
      throw bad("software.gpus_per_thread",
                "expected the GPUs one host thread drives, 1.." + std::to_string(c.gpus_per_node) + ", got " + g.dump());
    c.gpus_per_thread = g.get<int>();
  }
  const auto& size = p.at("size");
  if (is_ep(c.category)) {
    try {
      c.ep = parse_ep_setting(size, sw, c.category == "ep_combine", c.nodes, c.gpus_per_node);
    } catch (const std::invalid_argument& e) {
      const std::string what = e.what();
      const auto colon = what.find(": ");
      if (colon == std::string::npos) throw bad("size", what);
      throw bad(what.substr(0, colon), what.substr(colon + 2));
    }
    c.size_bytes = static_cast<double>(c.ep.tokens) * ep_token_bytes(c.ep);
    return c;
  }
  if (c.category == "gemm" || c.category == "gemm_grouped" || c.category == "overlap") {
    c.dtype = size.value("dtype", std::string());
    if (c.dtype != "bf16" && c.dtype != "fp16" && c.dtype != "fp8" && c.dtype != "fp32")
      throw bad("size.dtype", "expected bf16, fp16, fp8 or fp32");
    if (c.category != "gemm_grouped") {
      const std::string mnk = size.at("MxNxK").get<std::string>();
      if (std::sscanf(mnk.c_str(), "%lldx%lldx%lld", &c.m, &c.n, &c.k) != 3 || c.m < 1 || c.n < 1 || c.k < 1)
        throw bad("size.MxNxK", "expected \"MxNxK\" with positive integers, got \"" + mnk + "\"");
    } else {
      c.groups = size.at("groups").get<long long>();
      c.m = size.at("M_per_group").get<long long>();
      c.n = size.at("N").get<long long>();
      c.k = size.at("K").get<long long>();
      if (c.groups < 1 || c.m < 1 || c.n < 1 || c.k < 1)
        throw bad("size", "expected positive groups, M_per_group, N and K");
    }
    if (c.category == "overlap") parse_overlap(c, p, bad);
    return c;
  }
  if (!size.contains("bytes") || size["bytes"].is_null()) throw bad("size.bytes", "expected the message size");
  const auto& b = size["bytes"];
  c.size_bytes = b.is_number() ? b.get<double>() : parse_size(path + ".size.bytes", b.get<std::string>());
  if (!(c.size_bytes > 0)) throw bad("size.bytes", "expected a positive size");
  if (kCollectives.count(c.category) && c.gpus_per_node * c.nodes < 2)
    throw bad("hardware", "a collective needs at least two GPUs");
  if (c.category == "alltoall") c.algorithm.clear();  // NCCL's all-to-all is point-to-point whatever NCCL_ALGO says
  check_algorithm(c, op_of(c.category), bad);
  return c;
}

// What the point's harness times for one call that keeps the GPU busy for `gpu_s`. nccl-tests launches its
// iterations back to back and divides the loop's time: the GPU runs them one after another while the host enqueues
// the next, so a call costs whichever is longer, its GPU time or the host's enqueue on every GPU its thread drives
// (with -g 8, eight launches per call). Under a CUDA graph the replay has no host cost; a framework's call adds its
// own host cost to a call it waits for.
double timed_call(const CalibrationPoint& p, double gpu_s, const core::Calibration& cal) {
  // A framework's overlapped iteration issues its collective first: the GPU idles through the call's host cost, which
  // the sequential one hides behind its GEMM.
  if (p.category == "overlap")
    return gpu_s + (p.overlapped && p.harness == CalibrationPoint::Harness::framework ? cal.framework_call_latency_s : 0);
  if (!kCollectives.count(p.category) && p.tool.find("sendrecv_perf") == std::string::npos) return gpu_s;
  switch (p.harness) {
    case CalibrationPoint::Harness::cuda_graph: return gpu_s;
    case CalibrationPoint::Harness::framework: return gpu_s + cal.framework_call_latency_s;
    case CalibrationPoint::Harness::launch_loop: break;
  }
  // alltoall_perf posts a send and a receive to every rank, its own included; sendrecv_perf one of each.
  const int p2p_ops = p.category == "alltoall" ? 2 * p.nodes * p.gpus_per_node : p.category == "p2p_nvlink" ? 2 : 0;
  return cal.launch_loop_time(gpu_s, p.gpus_per_thread, p2p_ops);
}

// The simulated value of one point in the point's own metric.
double to_metric(const CalibrationPoint& p, double seconds, int ranks) {
  if (p.metric == "time") return seconds * 1e6;
  if (p.metric == "TFLOPS") return 2.0 * p.groups * p.m * p.n * p.k / seconds / 1e12;
  const double algbw = p.size_bytes / seconds / 1e9;
  if (p.metric == "busbw") {
    if (p.category == "allreduce") return algbw * 2.0 * (ranks - 1) / ranks;
    if (kCollectives.count(p.category)) return algbw * (ranks - 1) / ranks;
  }
  return algbw;
}

core::ClusterSpec machine_of(const CalibrationPoint& p) {
  core::ClusterGeneratorOptions o;
  o.gpu = p.gpu_preset;
  o.nodes = p.nodes;
  // A copy between two GPUs needs two; everything else runs on exactly the machine measured.
  o.gpus_per_node = p.category == "p2p_nvlink" ? std::max(2, p.gpus_per_node) : p.gpus_per_node;
  // Nodes with several NICs per GPU (AWS p5: 32 EFA adapters for 8 GPUs) are one NIC per GPU of the same total rate.
  o.nics_per_node = p.nics_per_node > 0 ? std::min(p.nics_per_node, o.gpus_per_node) : 1;
  while (o.gpus_per_node % o.nics_per_node != 0) --o.nics_per_node;
  if (p.nics_per_node > 0) o.nic_gbits_per_s = p.nic_gbps * p.nics_per_node / o.nics_per_node;
  core::ClusterSpec spec = core::generate_cluster(o);
  if (p.efa) spec.node.nics.transport = core::NicTransport::efa;
  return spec;
}

// Simulates the points of one machine; returns their model values in order.
nlohmann::json simulate_machine(const std::vector<const CalibrationPoint*>& points, const core::Calibration& cal) {
  const core::ClusterSpec spec = machine_of(*points.front());
  sim::SimOptions options;
  options.calibration = cal;
  std::vector<double> values(points.size(), 0.0);
  sim::simulate(
      spec, spec.total_gpus(),
      [&](core::Runtime& rt) {
        using namespace core;
        const Group world = Group::world(rt.world_size());
        Buffer none;
        for (std::size_t i = 0; i < points.size(); ++i) {
          const CalibrationPoint& p = *points[i];
          const auto bytes = static_cast<std::uint64_t>(p.size_bytes);
          const CollectiveAlgo algo =
              p.algorithm.empty() ? CollectiveAlgo::automatic : parse_collective_algo(p.algorithm);
          // The machine is built with exactly the point's nodes and GPUs, so collectives span the world.
          const Group& group = world;
          const int r = rt.rank();
          const double t0 = rt.now_s();
          auto collective = [&](const std::string& category) {
            if (category == "allgather") return rt.all_gather(streams::kComm, group, none, none, bytes, algo);
            if (category == "reduce_scatter")
              return rt.reduce_scatter(streams::kComm, group, none, none, bytes, Dtype::fp32, algo);
            if (category == "alltoall") {
              std::vector<std::uint64_t> per_peer(static_cast<std::size_t>(group.size()), bytes / group.size());
              return rt.all_to_all(streams::kComm, group, none, per_peer, none, per_peer, algo);
            }
            return rt.all_reduce(streams::kComm, group, none, bytes, Dtype::fp32, algo);
          };
          auto gemm = [&] {
            GemmOp g;
            g.m = p.m;
            g.n = p.n;
            g.k = p.k;
            g.batch = p.groups;
            g.dtype = dtype_of(p.dtype);
            return rt.compute(streams::kCompute, g, "gemm");
          };
          if (kCollectives.count(p.category)) {
            rt.wait(collective(p.category));
          } else if (p.category == "overlap") {
            // Every GPU runs the GEMM beside the collective (issued first, on its own stream) or after it.
            if (p.overlapped) {
              const Event c = collective(p.overlap_collective), g = gemm();
              rt.wait(c);
              rt.wait(g);
            } else {
              rt.wait(gemm());
              rt.wait(collective(p.overlap_collective));
            }
          } else if (p.category == "p2p_nvlink" && p.tool.find("sendrecv_perf") != std::string::npos) {
            sendrecv_ring(rt, p.gpus_per_node, bytes);  // the GPUs of one node
          } else if (p.category == "p2p_nvlink" && p.tool.find("_ce") != std::string::npos && r < 2) {
            // nvbandwidth's copy-engine device-to-device copy (GPU 0 to GPU 1; bidirectional: both ways at once).
            auto& sim_rt = dynamic_cast<sim::SimRuntime&>(rt);
            const bool both = p.tool.find("bidirectional") != std::string::npos;
            // The two copies start together and are the same size, so GPU 0's ends when both do.
            if (r == 0 || both) rt.wait(sim_rt.peer_copy(streams::kD2H, 1 - r, bytes));
          } else if (p.category == "p2p_nvlink" && r < 2) {
            // nvbandwidth device-to-device with SM copy kernels: GPU 0 writes to GPU 1 (bidirectional: both write to
            // each other at once), loads and stores over NVLink as NCCL's point-to-point kernels do.
            const bool both = p.tool.find("bidirectional") != std::string::npos;
            std::vector<Event> events;
            if (r == 0) events.push_back(rt.send(streams::kComm, 1, none, bytes, 0));
            if (r == 1) events.push_back(rt.recv(streams::kComm2, 0, none, bytes, 0));
            if (both && r == 1) events.push_back(rt.send(streams::kComm, 0, none, bytes, 1));
            if (both && r == 0) events.push_back(rt.recv(streams::kComm2, 1, none, bytes, 1));
            for (const Event& e : events) rt.wait(e);
          } else if ((p.category == "pcie_h2d" || p.category == "pcie_d2h") && r == 0) {
            Buffer host{1, Tier::dram, bytes, nullptr}, dev{2, Tier::hbm, bytes, nullptr};
            const bool h2d = p.category == "pcie_h2d";
            rt.wait(h2d ? rt.copy(streams::kH2D, dev, host, bytes) : rt.copy(streams::kD2H, host, dev, bytes));
          } else if (p.category == "pcie_duplex" && r == 0) {
            // Both directions at once, the same size each (nvbandwidth's *_bidirectional_memcpy_ce pair).
            Buffer host{1, Tier::dram, bytes, nullptr}, dev{2, Tier::hbm, bytes, nullptr};
            const Event up = rt.copy(streams::kD2H, host, dev, bytes), down = rt.copy(streams::kH2D, dev, host, bytes);
            rt.wait(up);
            rt.wait(down);
          } else if (is_ep(p.category)) {
            const EpTraffic traffic = ep_traffic(p.ep);
            rt.wait(rt.all_to_all(streams::kComm, group, none, traffic.to_rank, none, traffic.to_rank, traffic.algo,
                                  traffic.to_node));
          } else if ((p.category == "gemm" || p.category == "gemm_grouped") && r == 0) {
            rt.wait(gemm());
          }
          const double t = timed_call(p, rt.now_s() - t0, cal);
          if (r == 0) {
            // Both directions' bytes: a bidirectional copy's "total" and a duplex point's sum of the two directions.
            const bool bidirectional = (p.category == "p2p_nvlink" && p.tool.find("bidirectional") != std::string::npos) ||
                                       p.category == "pcie_duplex";
            values[i] = is_ep(p.category) ? ep_metric(p.ep, p.metric, t)
                                          : to_metric(p, t, group.size()) * (bidirectional ? 2 : 1);
          }
          rt.wait(rt.all_reduce(streams::kComm, world, none, 4, Dtype::fp32));  // barrier between points
        }
      },
      options);
  return values;
}

}  // namespace

std::string CalibrationPoint::machine() const {
  if (category == "gemm" || category == "gemm_grouped") return gpu_preset + "/gemm";
  const int gpus = category == "p2p_nvlink" ? std::max(2, gpus_per_node) : gpus_per_node;
  return gpu_preset + "/" + std::to_string(nodes) + "x" + std::to_string(gpus) + "/" + std::to_string(nics_per_node) +
         "x" + std::to_string(nic_gbps) + (efa ? "/efa" : "");
}

std::vector<CalibrationPoint> load_calibration_points(const std::string& file) {
  const nlohmann::json j = core::read_json_file(file);
  if (!j.contains("points") || !j["points"].is_array()) throw core::ConfigError(file, "points", "expected an array");
  std::vector<CalibrationPoint> points;
  std::set<std::string> ids;
  for (std::size_t i = 0; i < j["points"].size(); ++i) {
    const std::string path = "points[" + std::to_string(i) + "]";
    try {
      points.push_back(parse_point(j["points"][i], file, path));
    } catch (const nlohmann::json::exception& e) {
      throw core::ConfigError(file, path, std::string("malformed calibration point: ") + e.what());
    }
    if (!ids.insert(points.back().id).second)
      throw core::ConfigError(file, path + ".id", "point id \"" + points.back().id + "\" appears twice");
  }
  return points;
}

void evaluate_calibration_points(std::vector<CalibrationPoint>& points, const core::Calibration& cal, int jobs) {
  std::map<std::string, std::vector<std::size_t>> by_machine;
  for (std::size_t i = 0; i < points.size(); ++i)
    if (points[i].evaluated()) by_machine[points[i].machine()].push_back(i);
  std::vector<std::vector<std::size_t>> machines;
  for (auto& [key, idx] : by_machine) machines.push_back(idx);
  std::exception_ptr failure;
  sim::run_isolated_each(
      machines.size(), jobs,
      [&](std::size_t m) {
        std::vector<const CalibrationPoint*> ps;
        for (std::size_t i : machines[m]) ps.push_back(&points[i]);
        return simulate_machine(ps, cal);
      },
      [&](std::size_t m, sim::IsolatedOutcome&& o) {
        if (o.error) {
          if (!failure) failure = o.error;
          return;
        }
        for (std::size_t i = 0; i < machines[m].size(); ++i) points[machines[m][i]].model = o.value[i].get<double>();
      });
  if (failure) std::rethrow_exception(failure);
}

}  // namespace moesys::cli
