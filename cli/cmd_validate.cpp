// `moesys validate`: runs a small GPT-MoE training configuration for real on this machine (CPU runtime: MPI ranks +
// BLAS; under mpirun, or one rank without it) and in simulation on a cluster description of this machine whose
// rates a short built-in microbenchmark measures, then prints predicted vs measured step time per phase and the
// step-time error.
#include <cstdio>
#include <string>

#include "cli/args.hpp"
#include "cli/command.hpp"
#include "cli/validate_policies.hpp"
#include "studies/worker_launch.hpp"
#include "core/error.hpp"

#ifdef MOESYS_HAVE_EXEC

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/calibration.hpp"
#include "core/cluster.hpp"
#include "exec/model/train_program.hpp"
#include "sim/simulation.hpp"
#endif

namespace moesys::cli {
using namespace moesys::studies;  // study drivers and real-run launchers
namespace {

#ifdef MOESYS_HAVE_EXEC
using exec::model::GptMoeConfig;

void write_text(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    if (!(out << text)) throw core::RuntimeFailure("cannot write " + path);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw core::RuntimeFailure("cannot write " + path);
}

// Runs the MPI worker under mpirun (or directly for one rank); returns its JSON.
nlohmann::json run_worker(int ranks, const GptMoeConfig& c, int steps, int warmup) {
  const std::string out = worker_temp_path("moesys-validate");
  run_exec_worker(ranks, {out, std::to_string(c.hidden), std::to_string(c.layers), std::to_string(c.heads),
                          std::to_string(c.experts), std::to_string(c.top_k), std::to_string(c.seq_len),
                          std::to_string(c.micro_batch), std::to_string(c.vocab), std::to_string(steps),
                          std::to_string(warmup), std::string(core::to_string(c.all_to_all))});
  std::ifstream in(out);
  nlohmann::json j = nlohmann::json::parse(in);
  std::filesystem::remove(out);
  return j;
}

int run_validate(int argc, char** argv) {
  Args args(argc, argv, 1,
            {"--ranks", "--hidden", "--layers", "--heads", "--experts", "--top-k", "--seq", "--micro-batch",
             "--vocab", "--steps", "--warmup", "--all-to-all", "--cluster-out", "--json", "--preset", "--policy",
             "--compare", "--model", "--repeats"},
            {"--help", "--detail"});
  if (args.has("--help")) {
    std::printf(
        "usage: moesys validate [--ranks 4] [--hidden 256] [--layers 2] [--heads 4] [--experts 2*ranks] [--top-k 2]\n"
        "                       [--seq 64] [--micro-batch 4] [--vocab 512] [--steps 4] [--warmup 2]\n"
        "                       [--all-to-all direct|hierarchical] [--cluster-out FILE] [--json FILE] [--detail]\n"
        "       moesys validate --preset NAME | --policy JSON | --compare deepspeed,moesys\n"
        "                       [--ranks 4] [--model JSON] [--steps 4] [--warmup 2] [--repeats 3] [--json FILE]\n"
        "The second form runs the training program of the presets for real and in simulation on a measured\n"
        "description of this machine.\n"
        "Ranks above 1 run under mpirun (--allow-run-as-root --oversubscribe).\n");
    return 0;
  }
  if (!args.positional().empty()) throw core::ConfigError("", args.positional().front(), "unexpected argument");
  if (args.has("--preset") || args.has("--policy") || args.has("--compare")) return validate_policies(args);
  const int P = args.get_int("--ranks", 4);
  if (P < 1 || P > 64) throw core::ConfigError("", "--ranks", "expected 1..64 ranks");
  GptMoeConfig c;
  c.hidden = args.get_int("--hidden", 256), c.layers = args.get_int("--layers", 2);
  c.heads = args.get_int("--heads", 4), c.experts = args.get_int("--experts", 2 * P);
  c.top_k = args.get_int("--top-k", 2), c.seq_len = args.get_int("--seq", 64);
  c.micro_batch = args.get_int("--micro-batch", 4), c.vocab = args.get_int("--vocab", 512);
  try {
    c.all_to_all = core::parse_collective_algo(args.get_or("--all-to-all", "direct"));
  } catch (const std::invalid_argument& e) {
    throw core::ConfigError("", "--all-to-all", e.what());
  }
  const int steps = args.get_int("--steps", 4), warmup = args.get_int("--warmup", 2);
  if (c.experts < P || c.experts % P != 0)
    throw core::ConfigError("", "--experts", "expected a multiple of the " + std::to_string(P) + " ranks");
  if (c.hidden < 1 || c.heads < 1 || c.hidden % c.heads != 0)
    throw core::ConfigError("", "--heads", "expected a divisor of --hidden");
  if (c.top_k < 1 || c.top_k > c.experts) throw core::ConfigError("", "--top-k", "expected 1..experts");
  if (steps < 1 || warmup < 0) throw core::ConfigError("", "--steps", "expected >= 1 measured steps");

  // 1-2. Measure this machine and run the configuration for real (MPI worker).
  const nlohmann::json real = run_worker(P, c, steps, warmup);
  const core::ClusterSpec spec = core::parse_cluster(real.at("cluster"), "<worker>");
  const core::Calibration cal = core::parse_calibration(real.at("calibration"), "<worker>");
  const auto measured = exec::model::breakdown_from_json(real.at("measured"));
  const auto& rates = real.at("rates");
  const std::string cluster_out = args.get_or("--cluster-out", "validate-cluster.json");
  write_text(cluster_out, real.at("cluster").dump(2) + "\n");
  const std::int64_t T = c.tokens();
  // 3. Predict: the same program in the simulator, on the measured description of this machine.
  sim::SimOptions so;
  so.calibration = cal;
  auto result = sim::simulate(spec, P, [&](core::Runtime& rt) { exec::model::train_steps(rt, c, warmup + steps); }, so);
  const auto predicted = exec::model::step_breakdown(result.ranks[0].spans, warmup);

  const double err = (predicted.step_s - measured.step_s) / measured.step_s * 100;
  std::printf("# moesys validate: %d rank(s) on this machine, GPT-MoE hidden %d, %d layers, %d experts top-%d, "
              "%lld tokens per rank, all-to-all %s\n",
              P, c.hidden, c.layers, c.experts, c.top_k, static_cast<long long>(T), core::to_string(c.all_to_all));
  std::printf("# measured rates per rank: GEMM %.1f GFLOP/s, memory %.1f GB/s (kernels %.1f GB/s), all-to-all %.2f GB/s, latency %.1f us, "
              "kernel overhead %.2f us, SSD read %.2f / write %.2f GB/s\n",
              rates.at("gemm_flop_per_s").get<double>() / 1e9, rates.at("copy_bytes_per_s").get<double>() / 1e9,
              rates.at("stream_bytes_per_s").get<double>() / 1e9,
              rates.at("all_to_all_bytes_per_s").get<double>() / 1e9, rates.at("latency_s").get<double>() * 1e6,
              rates.at("op_overhead_s").get<double>() * 1e6, rates.at("ssd_read_bytes_per_s").get<double>() / 1e9,
              rates.at("ssd_write_bytes_per_s").get<double>() / 1e9);
  std::printf("# cluster description written to %s; %d measured steps after %d warm-up\n", cluster_out.c_str(),
              steps, warmup);
  std::printf("%-12s %14s %14s %9s\n", "phase", "predicted(ms)", "measured(ms)", "error");
  nlohmann::json j = {{"ranks", P}, {"predicted_step_s", predicted.step_s}, {"measured_step_s", measured.step_s},
                      {"step_error_pct", err}, {"phases", nlohmann::json::object()}};
  std::map<std::string, std::pair<double, double>> rows;
  for (const auto& [k, v] : predicted.phase_s) rows[k].first = v;
  for (const auto& [k, v] : measured.phase_s) rows[k].second = v;
  for (const auto& [k, pm] : rows) {
    const double e = pm.second > 0 ? (pm.first - pm.second) / pm.second * 100 : 0;
    std::printf("%-12s %14.3f %14.3f %+8.1f%%\n", k.c_str(), pm.first * 1e3, pm.second * 1e3, e);
    j["phases"][k] = {{"predicted_s", pm.first}, {"measured_s", pm.second}};
  }
  if (args.has("--detail")) {  // per operation name
    std::map<std::string, std::pair<double, double>> ops;
    for (const auto& [k, v] : predicted.op_s) ops[k].first = v;
    for (const auto& [k, v] : measured.op_s) ops[k].second = v;
    for (const auto& [k, pm] : ops) std::printf("  %-26s %10.3f %10.3f\n", k.c_str(), pm.first * 1e3, pm.second * 1e3);
  }
  std::printf("%-12s %14.3f %14.3f %+8.1f%%\n", "step", predicted.step_s * 1e3, measured.step_s * 1e3, err);
  std::printf("step-time error: %+.1f%%\n", err);
  if (auto path = args.get("--json")) write_text(*path, j.dump(2) + "\n");
  return 0;
}
#else
int run_validate(int, char**) {
  throw core::RuntimeFailure("this moesys was built without the real runtimes (exec/ needs MPI and OpenBLAS)");
}
#endif

const CommandRegistrar kRegistrar("validate", "run a configuration for real and in simulation, compare step times",
                                  run_validate);

}  // namespace
}  // namespace moesys::cli
