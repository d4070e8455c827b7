// `moesys collective`: an nccl-tests style benchmark of one collective on a simulated cluster.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>
#include <nlohmann/json.hpp>

#include "cli/cluster_options.hpp"
#include "cli/command.hpp"
#include "cli/nccl_tests_ops.hpp"
#include "core/error.hpp"
#include "sim/collectives.hpp"
#include "sim/simulation.hpp"

namespace moesys::cli {
namespace {

constexpr int kMaxSizes = 1000;

struct Row {
  double bytes = 0;
  double time_s = 0;
};

// An operation of nccl-tests: a collective, or sendrecv_perf's ring of messages (no collective: nullopt).
std::optional<sim::CollectiveOp> parse_op(const std::string& s) {
  if (s == "allreduce") return sim::CollectiveOp::all_reduce;
  if (s == "reducescatter") return sim::CollectiveOp::reduce_scatter;
  if (s == "allgather") return sim::CollectiveOp::all_gather;
  if (s == "alltoall") return sim::CollectiveOp::all_to_all;
  if (s == "sendrecv") return std::nullopt;
  throw core::ConfigError(
      "", "--op", "unknown operation '" + s + "' (known: allreduce, reducescatter, allgather, alltoall, sendrecv)");
}

// nccl-tests' bus bandwidth factors: what each rank's links must carry relative to the algorithm bandwidth.
double busbw_factor(std::optional<sim::CollectiveOp> op, int n) {
  if (!op) return 1;  // sendrecv: each rank sends the whole buffer once
  if (*op == sim::CollectiveOp::all_reduce) return 2.0 * (n - 1) / n;
  return static_cast<double>(n - 1) / n;
}

core::Event issue(core::Runtime& rt, sim::CollectiveOp op, const core::Group& world, double size,
                  core::CollectiveAlgo algo) {
  const auto bytes = static_cast<std::uint64_t>(size);
  core::Buffer none;
  switch (op) {
    case sim::CollectiveOp::all_reduce:
      return rt.all_reduce(core::streams::kComm, world, none, bytes, core::Dtype::fp32, algo);
    case sim::CollectiveOp::reduce_scatter:
      return rt.reduce_scatter(core::streams::kComm, world, none, none, bytes, core::Dtype::fp32, algo);
    case sim::CollectiveOp::all_gather:
      return rt.all_gather(core::streams::kComm, world, none, none, bytes, algo);
    case sim::CollectiveOp::all_to_all: {
      // nccl-tests alltoall: the per-rank buffer is split evenly among all ranks (itself included).
      std::vector<std::uint64_t> per_peer(static_cast<std::size_t>(world.size()), bytes / world.size());
      return rt.all_to_all(core::streams::kComm, world, none, per_peer, none, per_peer, algo);
    }
  }
  return {};
}

// Runs one call and waits for it.
void run_op(core::Runtime& rt, std::optional<sim::CollectiveOp> op, const core::Group& world, double size,
            core::CollectiveAlgo algo) {
  if (!op) {
    sendrecv_ring(rt, rt.world_size(), static_cast<std::uint64_t>(size));
    return;
  }
  rt.wait(issue(rt, *op, world, size, algo));
}

int run_collective(int argc, char** argv) {
  std::set<std::string> valued = cluster_flags();
  valued.insert({"--op", "--algo", "-b", "-e", "-f", "--ranks", "--flows", "-g", "-G"});
  Args args(argc, argv, 1, valued, {"--json", "--no-pxn", "--help"});
  if (args.has("--help")) {
    std::printf(
        "usage: moesys collective [--cluster FILE | --nodes N --gpus-per-node G --nics-per-node K --nic-gbps B\n"
        "                          --gpu a100-80g|a100-40g|h100|h200|h800]\n"
        "                         [--op allreduce|reducescatter|allgather|alltoall|sendrecv]\n"
        "                         [--algo auto|ring|tree|nvls|nvlstree|direct|hierarchical|deepep|deepep-ll|ce]\n"
        "                         [-b 8] [-e 1G] [-f 2]\n"
        "                         [--ranks N] [-g 1] [-G 0]\n"
        "                         [--flows aggregated|detailed] [--no-pxn] [--calibration FILE] [--json]\n");
    return 0;
  }
  if (!args.positional().empty()) throw core::ConfigError("", args.positional().front(), "unexpected argument");
  core::ClusterSpec spec = cluster_from_args(args);
  if (args.has("--no-pxn")) spec.node.nics.pxn = false;  // NCCL_PXN_DISABLE=1
  const core::Calibration cal = calibration_from_args(args, spec);
  const std::optional<sim::CollectiveOp> op = parse_op(args.get_or("--op", "allreduce"));
  core::CollectiveAlgo algo;
  try {
    algo = core::parse_collective_algo(args.get_or("--algo", "auto"));
    if (op) algo = sim::resolve_algo(*op, algo);
  } catch (const std::invalid_argument& e) {
    throw core::ConfigError("", "--algo", e.what());
  }
  if (!op && algo != core::CollectiveAlgo::automatic)
    throw core::ConfigError("", "--algo", "sendrecv takes NCCL's point-to-point path only (auto)");
  if ((algo == core::CollectiveAlgo::nvls || algo == core::CollectiveAlgo::nvls_tree) && !sim::has_nvlink_sharp(spec))
    throw core::ConfigError("", "--algo",
                            std::string(core::to_string(algo)) +
                                " needs NVLink SHARP (NVSwitch nodes of H100, H800 or H200 GPUs), not " +
                                spec.node.gpu.model);
  if ((algo == core::CollectiveAlgo::deepep || algo == core::CollectiveAlgo::deepep_ll) &&
      spec.node.intra_node.kind == core::IntraNodeKind::pcie_only)
    throw core::ConfigError("", "--algo",
                            std::string(core::to_string(algo)) + " needs NVLink between a node's GPUs; nodes of " +
                                spec.name + " connect their GPUs through PCIe only");
  const double begin = args.get_size("-b", 8), end = args.get_size("-e", 1024.0 * 1024 * 1024);
  const double factor = args.get_double("-f", 2);
  if (end < begin) throw core::ConfigError("", "-e", "expected a maximum size >= the minimum size (-b)");
  if (!(factor > 1)) throw core::ConfigError("", "-f", "expected a growth factor > 1");
  // One simulated collective per size: the sweep's length is known before it runs.
  const double steps = std::floor(std::log(end / begin) / std::log(factor) + 1e-9) + 1;
  if (steps > kMaxSizes)
    throw core::ConfigError("", "-f",
                            "the sweep from -b to -e by -f has " +
                                std::to_string(static_cast<long long>(std::min(steps, 1e18))) + " sizes; at most " +
                                std::to_string(kMaxSizes) + " (use a larger factor)");
  const int ranks = args.get_int("--ranks", spec.total_gpus());
  if (ranks < 2 || ranks > spec.total_gpus())
    throw core::ConfigError("", "--ranks", "expected 2.." + std::to_string(spec.total_gpus()) + " ranks");
  if (algo == core::CollectiveAlgo::copy_engine) {
    std::vector<int> members(static_cast<std::size_t>(ranks));
    for (int r = 0; r < ranks; ++r) members[static_cast<std::size_t>(r)] = r;
    try {
      sim::check_copy_engine(spec, members);
    } catch (const std::invalid_argument& e) {
      throw core::ConfigError("", "--algo", e.what());
    }
  }
  if (algo == core::CollectiveAlgo::nvls || algo == core::CollectiveAlgo::nvls_tree) {
    std::vector<int> members(static_cast<std::size_t>(ranks));
    for (int r = 0; r < ranks; ++r) members[static_cast<std::size_t>(r)] = r;
    if (!sim::nvls_applies(spec, members))
      throw core::ConfigError("", "--ranks",
                              std::string(core::to_string(algo)) +
                                  " needs the same two or more GPUs on every node: a multiple of " +
                                  std::to_string(spec.node.gpus) + " ranks, or one node's");
  }
  // As nccl-tests times it: a loop of launches from a host thread that drives -g GPUs (the call costs at least
  // the host's launches), or with -G N > 0 the loop captured in a CUDA graph (the GPU time alone).
  const int gpus_per_thread = args.get_int("-g", 1);
  if (gpus_per_thread < 1 || gpus_per_thread > ranks)
    throw core::ConfigError("", "-g", "expected 1.." + std::to_string(ranks) + " GPUs per host thread");
  const int graph_iterations = args.get_int("-G", 0);
  if (graph_iterations < 0) throw core::ConfigError("", "-G", "expected 0 (no CUDA graph) or more iterations");
  // alltoall_perf posts a send and a receive to every rank (its own included) per call; sendrecv_perf one of each.
  const int p2p_ops = !op ? 2 : *op == sim::CollectiveOp::all_to_all ? 2 * ranks : 0;
  auto timed = [&](double gpu_s) {
    return graph_iterations > 0 ? gpu_s : cal.launch_loop_time(gpu_s, gpus_per_thread, p2p_ops);
  };
  const std::string flows = args.get_or("--flows", "aggregated");
  if (flows != "aggregated" && flows != "detailed")
    throw core::ConfigError("", "--flows", "expected 'aggregated' or 'detailed', got '" + flows + "'");
  if (flows == "detailed" && spec.total_gpus() > 256)
    throw core::ConfigError("", "--flows", "the detailed flow model is limited to 256 GPUs (one route per GPU pair)");

  std::vector<double> sizes;
  for (double s = begin; s <= end * (1 + 1e-12); s *= factor) sizes.push_back(s);
  std::vector<Row> rows;
  const bool progress = isatty(STDERR_FILENO);
  sim::SimOptions options;
  options.calibration = cal;
  options.flow_mode = flows == "detailed" ? sim::FlowMode::detailed : sim::FlowMode::aggregated;


  const auto wall_start = std::chrono::steady_clock::now();
  auto result = sim::simulate(
      spec, ranks,
      [&](core::Runtime& rt) {
        const core::Group world = core::Group::world(rt.world_size());
        for (std::size_t i = 0; i < sizes.size(); ++i) {
          const double t0 = rt.now_s();
          run_op(rt, op, world, sizes[i], algo);
          if (rt.rank() == 0) {
            rows.push_back({sizes[i], timed(rt.now_s() - t0)});
            if (progress) std::fprintf(stderr, "\r[%zu/%zu sizes simulated]", i + 1, sizes.size());
          }
        }
      },
      options);
  const double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  if (progress) std::fprintf(stderr, "\n");
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const double peak_mb = static_cast<double>(usage.ru_maxrss) / 1024.0;

  const double bus = busbw_factor(op, ranks);
  const char* op_name = op ? sim::to_string(*op) : "sendrecv";
  if (args.has("--json")) {
    nlohmann::json out = {{"cluster", spec.name},
                          {"op", op_name},
                          {"algo", core::to_string(algo)},
                          {"ranks", ranks},
                          {"flows", flows},
                          {"pxn", spec.node.nics.pxn},
                          {"gpus_per_thread", gpus_per_thread},
                          {"cuda_graph", graph_iterations > 0},
                          {"wall_s", wall_s},
                          {"peak_rss_mb", peak_mb},
                          {"simgrid_flows", result.flows},  // all flows planned, however they ran
                          {"solo_flows", result.solo_flows},
                          {"rows", nlohmann::json::array()}};
    for (const Row& r : rows)
      out["rows"].push_back({{"size_bytes", r.bytes},
                             {"count", r.bytes / 4},
                             {"type", "float"},
                             {"time_us", r.time_s * 1e6},
                             {"algbw_gbytes_per_s", r.bytes / r.time_s / 1e9},
                             {"busbw_gbytes_per_s", r.bytes / r.time_s / 1e9 * bus}});
    std::printf("%s\n", out.dump(1).c_str());
    return 0;
  }
  std::printf("# moesys collective: %s on %s, %d ranks, algorithm %s, %s flows, %s\n#\n", op_name,
              describe(spec).c_str(), ranks, core::to_string(algo), flows.c_str(),
              graph_iterations > 0 ? "CUDA graph (-G)"
                                   : ("launch loop, " + std::to_string(gpus_per_thread) + " GPU(s) per thread").c_str());
  std::printf("# %12s %12s %6s %12s %12s %12s\n", "size(B)", "count", "type", "time(us)", "algbw(GB/s)", "busbw(GB/s)");
  for (const Row& r : rows) {
    const double algbw = r.bytes / r.time_s / 1e9;
    std::printf("  %12.0f %12.0f %6s %12.2f %12.2f %12.2f\n", r.bytes, r.bytes / 4, "float", r.time_s * 1e6, algbw,
                algbw * bus);
  }
  std::printf("# simulated in %.2f s wall, peak memory %.0f MB, %llu flows (%llu in closed form)\n", wall_s, peak_mb,
              static_cast<unsigned long long>(result.flows), static_cast<unsigned long long>(result.solo_flows));
  return 0;
}

const CommandRegistrar kRegistrar("collective", "nccl-tests style collective benchmark on a simulated cluster",
                                  run_collective);

}  // namespace
}  // namespace moesys::cli
