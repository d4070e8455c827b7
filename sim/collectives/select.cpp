// Which algorithms serve which operation, NCCL-style automatic choice by predicted time, and the plan executor.
#include <algorithm>
#include <array>
#include <limits>
#include <map>
#include <stdexcept>
#include <unordered_map>

#include "sim/collectives.hpp"
#include "sim/profile.hpp"

namespace moesys::sim {

const char* to_string(CollectiveOp op) {
  switch (op) {
    case CollectiveOp::all_reduce:
      return "allreduce";
    case CollectiveOp::reduce_scatter:
      return "reducescatter";
    case CollectiveOp::all_gather:
      return "allgather";
    case CollectiveOp::all_to_all:
      return "alltoall";
  }
  return "?";
}

bool has_nvlink_sharp(const core::ClusterSpec& spec) {
  // NVSwitch gen3, with in-switch reduction, came with Hopper: the H100, H800 and H200 nodes.
  const std::string family = core::gpu_family_of(spec.node.gpu.model);
  return spec.node.intra_node.kind == core::IntraNodeKind::nvswitch && (family == "h100" || family == "h200");
}

bool nvls_applies(const core::ClusterSpec& spec, const std::vector<int>& members) {
  if (!has_nvlink_sharp(spec)) return false;
  std::map<int, std::vector<int>> by_node;  // node -> member locals
  for (int g : members) by_node[spec.node_of(g)].push_back(spec.local_of(g));
  for (auto& [node, locals] : by_node) std::sort(locals.begin(), locals.end());
  const auto& first = by_node.begin()->second;
  return first.size() >= 2 &&
         std::all_of(by_node.begin(), by_node.end(), [&](const auto& kv) { return kv.second == first; });
}

std::vector<int> nodes_of(const core::ClusterSpec& spec, const std::vector<int>& members) {
  std::vector<int> nodes;
  for (int g : members) nodes.push_back(spec.node_of(g));
  std::sort(nodes.begin(), nodes.end());
  nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
  return nodes;
}

int nodes_spanned(const core::ClusterSpec& spec, const std::vector<int>& members) {
  return static_cast<int>(nodes_of(spec, members).size());
}

core::CollectiveAlgo resolve_algo(CollectiveOp op, core::CollectiveAlgo requested) {
  using core::CollectiveAlgo;
  const bool a2a = op == CollectiveOp::all_to_all;
  if (a2a && requested == CollectiveAlgo::automatic) return CollectiveAlgo::direct;
  const bool all_reduce_only =
      requested == CollectiveAlgo::tree || requested == CollectiveAlgo::nvls || requested == CollectiveAlgo::nvls_tree;
  const bool ok = a2a ? (requested == CollectiveAlgo::direct || requested == CollectiveAlgo::hierarchical ||
                         requested == CollectiveAlgo::deepep || requested == CollectiveAlgo::deepep_ll ||
                         requested == CollectiveAlgo::copy_engine)
                      : (requested == CollectiveAlgo::automatic || requested == CollectiveAlgo::ring ||
                         (all_reduce_only && op == CollectiveOp::all_reduce) ||
                         (requested == CollectiveAlgo::copy_engine && op == CollectiveOp::all_gather));
  if (!ok)
    throw std::invalid_argument(std::string("algorithm '") + core::to_string(requested) + "' does not implement " +
                                to_string(op) + " (valid: " +
                                (a2a                              ? "auto, direct, hierarchical, deepep, deepep-ll, ce"
                                 : op == CollectiveOp::all_reduce ? "auto, ring, tree, nvls, nvlstree"
                                 : op == CollectiveOp::all_gather ? "auto, ring, ce"
                                                                  : "auto, ring") +
                                ")");
  return requested;
}

double predict_plan_time(const core::ClusterSpec& spec, const core::Calibration& cal, const CollectivePlan& plan) {
  const auto& n = spec.node;
  const double nvlink = n.intra_node.kind == core::IntraNodeKind::nvswitch
                            ? n.intra_node.bytes_per_s_per_gpu * cal.nvlink_efficiency
                            : n.pcie.bytes_per_s() * cal.pcie_efficiency;
  // A GPU's share of its node's NICs.
  const double nic = n.nics.count > 0 ? n.nics.bytes_per_s * cal.nic_efficiency * n.nics.count / n.gpus : 0;
  double total = 0;
  for (const Stage& stage : plan) {
    // Seconds of port time per GPU: [gpu] -> {out over NVLink, in over NVLink, out over NIC, in over NIC}.
    std::unordered_map<int, std::array<double, 4>> busy;
    stage.for_each_transfer([&](const Transfer& t) {
      if (t.bytes <= 0 || t.src_gpu == t.dst_gpu) return;
      const bool network = spec.node_of(t.src_gpu) != spec.node_of(t.dst_gpu);
      const double rate = (network ? nic : nvlink) * transfer_efficiency(cal, t, network);
      const double s = rate > 0 ? t.bytes / rate : std::numeric_limits<double>::infinity();
      busy[t.src_gpu][network ? 2 : 0] += s;
      busy[t.dst_gpu][network ? 3 : 1] += s;
    });
    double slowest = 0;
    for (const auto& [gpu, ports] : busy) slowest = std::max(slowest, *std::max_element(ports.begin(), ports.end()));
    total += stage.latency_s(cal) + slowest;
  }
  return total;
}

namespace {

// How NCCL's tuner (ncclTopoTuneModel, NCCL 2.8 to 2.2x) rates a tree all-reduce: its bus bandwidth is 0.9 (0.92 in
// later versions) of the ring's over the same channels, converted to algorithm bandwidth at 1/2, as if the tree moved
// 2S per GPU where the ring moves 2(n-1)/n S. On two nodes a tree sends each byte across the network once per
// direction where the ring sends it about twice, so it would be the faster at large sizes; NCCL does not pick it
// there, and runs it only where its shorter latency wins (the measured points time what NCCL picked). The automatic
// choice rates a tree the same way, then simulates the plan it chose at the plan's own rates.
constexpr double kTunerTreeBusShare = 0.9;

double plan_latency_s(const core::Calibration& cal, const CollectivePlan& plan) {
  double total = 0;
  for (const Stage& stage : plan) total += stage.latency_s(cal);
  return total;
}

CollectivePlan plan_fixed(const core::ClusterSpec& spec, const core::Calibration& cal, const CollectiveCall& call,
                          core::CollectiveAlgo algo, Protocol protocol) {
  switch (algo) {
    case core::CollectiveAlgo::ring:
      return plan_ring(spec, call, protocol);
    case core::CollectiveAlgo::tree:
      return plan_tree(spec, cal, call, protocol);
    case core::CollectiveAlgo::nvls:
      return plan_nvls(spec, cal, call, false);
    case core::CollectiveAlgo::nvls_tree:
      return plan_nvls(spec, cal, call, true);
    case core::CollectiveAlgo::direct:
      return plan_direct_all_to_all(spec, cal, call);
    case core::CollectiveAlgo::hierarchical:
      return plan_hierarchical_all_to_all(spec, cal, call);
    case core::CollectiveAlgo::deepep:
      return plan_deepep(spec, cal, call);
    case core::CollectiveAlgo::deepep_ll:
      return plan_deepep_low_latency(spec, cal, call);
    case core::CollectiveAlgo::copy_engine:
      return plan_copy_engine(spec, cal, call);
    case core::CollectiveAlgo::automatic:
      break;
  }
  throw std::logic_error("unresolved collective algorithm");
}

}  // namespace

CollectivePlan plan_collective(const core::ClusterSpec& spec, const core::Calibration& cal, const CollectiveCall& call,
                               core::CollectiveAlgo algo) {
  using core::CollectiveAlgo;
  algo = resolve_algo(call.op, algo);
  const int nodes = nodes_spanned(spec, call.members);
  const bool sharp = has_nvlink_sharp(spec);
  if ((algo == CollectiveAlgo::nvls || algo == CollectiveAlgo::nvls_tree) && !sharp)
    throw std::invalid_argument(std::string("algorithm '") + core::to_string(algo) +
                                "' needs NVLink SHARP (NVSwitch nodes of H100, H800 or H200 GPUs), not " +
                                spec.node.gpu.model);
  const bool nvls = nvls_applies(spec, call.members);
  if ((algo == CollectiveAlgo::nvls || algo == CollectiveAlgo::nvls_tree) && !nvls)
    throw std::invalid_argument(std::string("algorithm '") + core::to_string(algo) +
                                "' needs the same two or more GPUs of the group on every node it spans");
  if (algo == CollectiveAlgo::nvls && nodes > 1) algo = CollectiveAlgo::nvls_tree;  // NCCL's NVLS across nodes
  if (algo == CollectiveAlgo::nvls_tree && nodes == 1) algo = CollectiveAlgo::nvls;
  // Candidates: the requested algorithm, or every one the hardware offers for the operation; each with the
  // protocols it runs (NVLS and all-to-all use Simple only).
  std::vector<CollectiveAlgo> algos;
  if (algo != CollectiveAlgo::automatic) {
    algos = {algo};
  } else {
    algos = {CollectiveAlgo::ring};
    if (call.op == CollectiveOp::all_reduce && nodes > 1) algos.push_back(CollectiveAlgo::tree);
    if (call.op == CollectiveOp::all_reduce && nvls)
      algos.push_back(nodes > 1 ? CollectiveAlgo::nvls_tree : CollectiveAlgo::nvls);
  }
  // Ring plans first (`algos` starts with the ring): a tree is rated by the ring's bandwidth term.
  const int n = static_cast<int>(call.members.size());
  std::map<Protocol, double> ring_transfer_s;
  CollectivePlan best;
  double best_time = std::numeric_limits<double>::infinity();
  for (CollectiveAlgo a : algos) {
    const bool multi_protocol = a == CollectiveAlgo::ring || a == CollectiveAlgo::tree;
    for (Protocol p : {Protocol::simple, Protocol::ll128, Protocol::ll}) {
      if (!multi_protocol && p != Protocol::simple) continue;
      CollectivePlan plan = plan_fixed(spec, cal, call, a, p);
      if (algos.size() == 1 && !multi_protocol) return plan;
      double t = predict_plan_time(spec, cal, plan);
      if (a == CollectiveAlgo::ring) ring_transfer_s[p] = t - plan_latency_s(cal, plan);
      if (a == CollectiveAlgo::tree && algos.size() > 1)
        t = plan_latency_s(cal, plan) + ring_transfer_s.at(p) * n / (kTunerTreeBusShare * (n - 1));
      if (t < best_time) {
        best_time = t;
        best = std::move(plan);
      }
    }
  }
  return best;
}

void execute_plan(const CollectivePlan& plan, FlowEngine& flows, const core::Calibration& cal, double call_latency_s) {
  if (call_latency_s > 0 && !plan.empty()) {
    profile::InSimgrid in;
    sg::sg4::this_actor::sleep_for(call_latency_s);
  }
  for (const Stage& stage : plan) {
    if (const double latency = stage.latency_s(cal); latency > 0) {
      profile::InSimgrid in;
      sg::sg4::this_actor::sleep_for(latency);
    }
    flows.run(stage);
  }
}

}  // namespace moesys::sim
