// Profile of whole simulated training steps: wall time split into the simulator's phases (sim/profile.hpp),
// operation counts and peak memory, for several cluster sizes, with repeats (medians and ranges).
//
//   moesys_sim_profile [--gpus 64,256,1024] [--repeat 3] [--steps 2] [--config JSON] [--weak-scaling] [--json]
//                      [--direct-flow-limit N] [--flows-per-carrier N]   (SimOptions: where flows go through carriers)
//                      [--kernel-spans]   (one execution and span per kernel, as with `moesys train --trace`)
//                      [--no-solo-flows]  (every flow a SimGrid action, none in closed form: sim/solo_flows.hpp)
//                      [--max-solo-component N]   (largest component of flows solved in closed form; 256)
//
// --config is merged into the default training config (the paper's GPT-MoE with 128 experts, a global batch of
// 8192 sequences, preset moesys, i.e. `moesys train --experts 128 --model '{"global_batch": 8192}'`). With
// --weak-scaling the model and batch grow with the cluster instead: max(128, GPUs/8) experts and 8 sequences per
// GPU, the README's 1024-, 4096- and 8192-GPU steps. Every run is simulated in a child process (SimGrid allows
// one simulation per process), which also makes its peak RSS its own.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sim/training_simulator.hpp"
#include "policies/training/training_run.hpp"
#include "sim/isolated_run.hpp"
#include "sim/profile.hpp"

using nlohmann::json;
namespace tr = moesys::policies::training;
namespace profile = moesys::sim::profile;

namespace {

struct Options {
  std::vector<int> gpus{64, 256, 1024};
  int repeat = 3;
  int steps = 2;
  json patch = json::object();
  bool json_out = false;
  bool weak_scaling = false;
  moesys::sim::SimOptions sim = [] {  // --direct-flow-limit, --flows-per-carrier, --kernel-spans
    moesys::sim::SimOptions o;
    o.coalesce_kernels = true;  // as `moesys train` without --trace
    return o;
  }();
};

[[noreturn]] void usage_error(const std::string& what) {
  std::fprintf(stderr, "moesys_sim_profile: %s\nusage: moesys_sim_profile [--gpus 64,256,1024] [--repeat N] "
                       "[--steps S] [--config JSON] [--weak-scaling] [--direct-flow-limit N] [--flows-per-carrier N] "
                       "[--kernel-spans] [--no-solo-flows] [--max-solo-component N] [--json]\n", what.c_str());
  std::exit(2);
}

int positive(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  const long v = std::strtol(text.c_str(), &end, 10);
  if (end == text.c_str() || *end != '\0' || v < 1 || v > 1000000) usage_error(flag + ": expected a positive integer");
  return static_cast<int>(v);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--gpus") {
      o.gpus.clear();
      std::string list = value();
      for (std::size_t p = 0; p <= list.size();) {
        const std::size_t q = std::min(list.find(',', p), list.size());
        o.gpus.push_back(positive("--gpus", list.substr(p, q - p)));
        p = q + 1;
      }
    } else if (a == "--repeat") {
      o.repeat = positive(a, value());
    } else if (a == "--steps") {
      o.steps = positive(a, value());
    } else if (a == "--config") {
      o.patch = json::parse(value(), nullptr, false);
      if (!o.patch.is_object()) usage_error("--config: expected a JSON object");
    } else if (a == "--direct-flow-limit") {
      o.sim.direct_flow_limit = static_cast<std::size_t>(positive(a, value()));
    } else if (a == "--flows-per-carrier") {
      o.sim.flows_per_carrier = static_cast<std::size_t>(positive(a, value()));
    } else if (a == "--kernel-spans") {
      o.sim.coalesce_kernels = false;
    } else if (a == "--no-solo-flows") {
      o.sim.solo_flows = false;
    } else if (a == "--max-solo-component") {
      o.sim.max_solo_component = static_cast<std::size_t>(positive(a, value()));
    } else if (a == "--json") {
      o.json_out = true;
    } else if (a == "--weak-scaling") {
      o.weak_scaling = true;
    } else {
      usage_error("unknown argument '" + a + "'");
    }
  }
  return o;
}

json config_for(const Options& o, int gpus) {
  const int experts = o.weak_scaling ? std::max(128, gpus / 8) : 128;
  const int batch = o.weak_scaling ? 8 * gpus : 8192;
  json c = {{"model", {{"preset", "gpt-moe"}, {"experts", experts}, {"global_batch", batch}}},
            {"cluster", {{"gpus", gpus}}},
            {"steps", o.steps}};
  c.merge_patch(o.patch);
  return c;
}

/// One run, in the calling (child) process: the training step with the profiler on.
json profiled_run(const json& config, const moesys::sim::SimOptions& sim) {
  const tr::TrainingConfig c = tr::parse_training_config(config, "--config");
  const auto start = std::chrono::steady_clock::now();
  profile::enable();
  const tr::TrainingReport report = tr::run_training(c, tr::sim_simulator(sim));
  const profile::Totals t = profile::totals();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  json phases = json::object();
  for (int p = 0; p < profile::kPhaseCount; ++p)
    phases[profile::to_string(static_cast<profile::Phase>(p))] = t.seconds[static_cast<std::size_t>(p)];
  return {{"wall_s", wall},
          {"phases_s", phases},
          {"operations", t.operations},
          {"collectives", t.collectives},
          {"plan_reuses", t.plan_reuses},
          {"blocks", t.blocks},
          {"flows", report.summary["simulator"]["flows"]},
          {"solo_flows", report.summary["simulator"]["solo_flows"]},
          {"step_s", report.summary["step_s"]},
          {"peak_rss_mib", static_cast<double>(usage.ru_maxrss) / 1024.0}};
}

struct Stat {
  double median = 0, min = 0, max = 0;
};
Stat stat_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return {n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2, v.front(), v.back()};
}

std::vector<double> field(const std::vector<json>& runs, const json::json_pointer& p) {
  std::vector<double> v;
  for (const json& r : runs) v.push_back(r.at(p).get<double>());
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  json all = json::array();
  if (!o.json_out)
    std::printf("%6s %22s %9s %9s %9s %9s %9s %10s %8s %10s %9s\n", "gpus", "wall s (median [min..max])", "program",
                "planning", "simgrid", "bookkeep", "outside", "ops", "colls", "step s", "RSS MiB");
  for (int g : o.gpus) {
    std::vector<json> runs;
    for (int i = 0; i < o.repeat; ++i) {
      try {
        runs.push_back(moesys::sim::run_isolated([&] { return profiled_run(config_for(o, g), o.sim); }));
      } catch (const std::exception& e) {
        std::fprintf(stderr, "moesys_sim_profile: %d GPUs: %s\n", g, e.what());
        return 1;
      }
    }
    const Stat wall = stat_of(field(runs, json::json_pointer("/wall_s")));
    json row = {{"gpus", g}, {"repeats", o.repeat}, {"wall_s", {{"median", wall.median}, {"min", wall.min}, {"max", wall.max}}}};
    for (int p = 0; p < profile::kPhaseCount; ++p) {
      const std::string name = profile::to_string(static_cast<profile::Phase>(p));
      row["phases_s"][name] = stat_of(field(runs, json::json_pointer("/phases_s/" + name))).median;
    }
    row["peak_rss_mib"] = stat_of(field(runs, json::json_pointer("/peak_rss_mib"))).median;
    for (const char* k : {"operations", "collectives", "plan_reuses", "blocks", "flows", "solo_flows", "step_s"}) row[k] = runs.front()[k];
    all.push_back(row);
    if (!o.json_out) {
      const json& ph = row["phases_s"];
      std::printf("%6d %8.2f [%5.2f..%6.2f] %9.2f %9.2f %9.2f %9.2f %9.2f %10llu %8llu %10.6f %9.0f\n", g, wall.median,
                  wall.min, wall.max, ph["program"].get<double>(), ph["planning"].get<double>(),
                  ph["simgrid"].get<double>(), ph["bookkeeping"].get<double>(), ph["outside"].get<double>(),
                  row["operations"].get<unsigned long long>(), row["collectives"].get<unsigned long long>(),
                  row["step_s"].get<double>(), row["peak_rss_mib"].get<double>());
      std::fflush(stdout);
    }
  }
  if (o.json_out) std::printf("%s\n", all.dump(1).c_str());
  return 0;
}
