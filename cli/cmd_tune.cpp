// `moesys tune FILE`: searches a declared space of training settings in simulation (studies/tune_search.hpp), prints
// the best configuration, its gain over the reference presets and the throughput-memory Pareto front, and writes
// results/<name>/: tune.json (every simulated point), points.csv, best.json (a config `moesys train --config`
// runs on any runtime).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <set>
#include <sstream>

#include "cli/args.hpp"
#include "cli/command.hpp"
#include "core/error.hpp"
#include "core/json_input.hpp"
#include "core/output_files.hpp"
#include "policies/training/training_run.hpp"
#include "sim/isolated_run.hpp"
#include "sim/training_simulator.hpp"
#include "studies/result_set.hpp"
#include "studies/study_progress.hpp"
#include "studies/study_runs.hpp"
#include "studies/tune_search.hpp"

namespace moesys::cli {
namespace {

namespace fs = std::filesystem;
namespace tr = policies::training;
using nlohmann::json;
using studies::TunePoint;

/// A simulated config's score; an infeasible one (memory, layout) comes back as such.
struct Scored {
  bool feasible = false;
  double tokens_per_s = 0, peak_hbm_gib = 0, step_s = 0;
  std::string error;
};

/// Simulates the configs, `jobs` at once, each in its own process.
std::vector<Scored> simulate(const std::vector<json>& configs, const json& spec, const std::string& file, int jobs,
                             studies::StudyProgress& progress, const std::vector<std::string>& labels) {
  std::vector<Scored> out(configs.size());
  std::vector<std::chrono::steady_clock::time_point> started(configs.size());
  sim::run_isolated_each(
      configs.size(), jobs,
      [&](std::size_t i) {
        const tr::TrainingConfig c = tr::parse_training_config(configs[i], file);
        return tr::run_training(c, tr::sim_simulator(studies::study_calibration(spec, file, c.cluster))).summary;
      },
      [&](std::size_t i, sim::IsolatedOutcome&& o) {
        Scored& s = out[i];
        std::string outcome;
        if (o.error) {
          try {
            std::rethrow_exception(o.error);
          } catch (const core::InfeasibleError& e) {
            s.error = e.what();
            outcome = "infeasible: " + s.error;
          }
        } else {
          s.feasible = true;
          s.tokens_per_s = o.value.at("tokens_per_s").get<double>();
          s.peak_hbm_gib = o.value.at("memory").at("peak_hbm_gib").get<double>();
          s.step_s = o.value.at("step_s").get<double>();
          char buf[96];
          std::snprintf(buf, sizeof buf, "%.0f tokens/s, %.1f GiB HBM", s.tokens_per_s, s.peak_hbm_gib);
          outcome = buf;
        }
        const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - started[i]).count();
        progress.finished(labels[i], outcome, wall, s.feasible ? s.tokens_per_s : -1);
      },
      [&](std::size_t i) { started[i] = std::chrono::steady_clock::now(); });
  return out;
}

json point_json(const studies::TuneSpace& space, const TunePoint& p) {
  json settings = json::object();
  for (std::size_t d = 0; d < space.dims.size(); ++d) settings[space.dims[d].path] = space.dims[d].values[p.point[d]];
  json j = {{"settings", settings}, {"label", space.describe(p.point)}, {"feasible", p.feasible}};
  if (p.feasible)
    j.update({{"tokens_per_s", p.tokens_per_s}, {"peak_hbm_gib", p.peak_hbm_gib}, {"step_s", p.step_s}});
  else
    j["error"] = p.error;
  return j;
}

std::string csv_quote(const std::string& s) {
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

int run_tune(int argc, char** argv) {
  Args args(argc, argv, 1, {"--results", "-j", "--strategy"}, {"--quiet", "--help"});
  if (args.has("--help")) {
    std::printf(
        "usage: moesys tune FILE [--strategy descent|grid] [--results DIR] [-j JOBS] [--quiet]\n"
        "FILE: {\"name\": ..., \"base\": {training config}, \"space\": {\"policy.overlap_chunks\": [1, 2, 4], ...},\n"
        "       \"strategy\": \"descent\", \"compare\": [\"deepspeed\", {\"preset\": \"moesys\", \"gate\": \"dropless\"}]}\n"
        "  --strategy  descent (coordinate descent from the first values, the default) or grid (every point)\n"
        "  -j JOBS     simulations at once, each in its own process (default 1)\n");
    return 0;
  }
  if (args.positional().size() != 1)
    throw core::ConfigError("", "FILE", "expected exactly one search file, got " + std::to_string(args.positional().size()));
  const std::string file = args.positional().front();
  const json spec = core::read_json_file(file);
  if (!spec.is_object()) throw core::ConfigError(file, "", "expected an object with name, base and space");
  static const std::set<std::string> kKeys = {"name", "description", "base", "space", "strategy", "compare", "calibration"};
  for (auto it = spec.begin(); it != spec.end(); ++it)
    if (!kKeys.count(it.key()))
      throw core::ConfigError(file, it.key(),
                              "unknown key (valid keys: base, calibration, compare, description, name, space, strategy)");
  if (!spec.contains("name") || !spec["name"].is_string())
    throw core::ConfigError(file, "name", "expected a string naming the results folder");
  const std::string name = spec["name"];
  studies::check_study_name(name, file);
  std::string strategy = spec.value("strategy", std::string("descent"));
  if (auto s = args.get("--strategy")) strategy = *s;
  if (strategy != "descent" && strategy != "grid")
    throw core::ConfigError(args.get("--strategy") ? "" : file, args.get("--strategy") ? "--strategy" : "strategy",
                            "expected descent or grid, got \"" + strategy + "\"");
  const int jobs = args.get_int("-j", 1);
  if (jobs < 1 || jobs > 256) throw core::ConfigError("", "-j", "expected 1..256 simulations at once");
  const std::string results = args.get_or("--results", "results");
  const fs::path dir = fs::path(results) / name;
  core::check_output_dir(dir.string(), "--results");
  const bool quiet = args.has("--quiet");

  const studies::TuneSpace space = studies::parse_tune_space(spec, file);
  constexpr std::size_t kMaxGrid = 100000;
  if (space.grid_size() > kMaxGrid)
    throw core::ConfigError(file, "space", "has " + std::to_string(space.grid_size()) + " points, more than " +
                                               std::to_string(kMaxGrid) + ": narrow it");
  // Every point must be a valid config before anything runs: a value of the wrong kind fails here, with its path.
  std::vector<std::size_t> p(space.dims.size(), 0);
  for (std::size_t i = 0; i < space.grid_size(); ++i) {
    tr::parse_training_config(space.config_at(p), file);
    for (std::size_t d = space.dims.size(); d-- > 0;) {
      if (++p[d] < space.dims[d].values.size()) break;
      p[d] = 0;
    }
  }
  std::vector<std::string> compare;  // what each reference is called
  std::vector<json> compare_policies;
  if (spec.contains("compare")) {
    if (!spec["compare"].is_array()) throw core::ConfigError(file, "compare", "expected an array of preset names");
    for (const json& c : spec["compare"]) {
      // A preset name, or a policy object (a preset with toggles), checked like a config's policy.
      if (!c.is_string() && !c.is_object())
        throw core::ConfigError(file, "compare", "expected preset names or policy objects, got " + c.dump());
      const json policy = c.is_string() ? json{{"preset", c}} : c;
      compare_policies.push_back(policy);
      compare.push_back(tr::describe(tr::parse_policy(policy, file, "compare")));
    }
  }

  // An upper bound of the simulations: the grid, or for descent the start plus two sweeps of every dimension.
  std::size_t bound = space.grid_size();
  if (strategy == "descent") {
    std::size_t sweep = 0;
    for (const auto& d : space.dims) sweep += d.values.size() - 1;
    bound = std::min(bound, 1 + 2 * sweep);
  }
  studies::StudyProgress progress(bound + compare.size(), "tokens/s", quiet);
  std::vector<json> ref_configs;
  for (const json& policy : compare_policies) {
    json c = space.base;
    c["policy"] = policy;
    ref_configs.push_back(c);
  }
  const std::vector<Scored> refs = simulate(ref_configs, spec, file, jobs, progress, compare);
  const auto points = studies::tune_search(space, strategy, [&](const std::vector<std::vector<std::size_t>>& batch) {
    std::vector<json> configs;
    std::vector<std::string> labels;
    for (const auto& q : batch) configs.push_back(space.config_at(q)), labels.push_back(space.describe(q));
    const std::vector<Scored> scored = simulate(configs, spec, file, jobs, progress, labels);
    std::vector<TunePoint> out;
    for (std::size_t i = 0; i < batch.size(); ++i)
      out.push_back({batch[i], scored[i].feasible, scored[i].tokens_per_s, scored[i].peak_hbm_gib, scored[i].step_s,
                     scored[i].error});
    return out;
  });
  const TunePoint* best = studies::best_point(points);
  if (!best) throw core::InfeasibleError("no point of the space fits the cluster (" + points.front().error + ")");
  const auto front = studies::pareto_front(points);

  json doc = {{"name", name},
              {"description", spec.value("description", "")},
              {"strategy", strategy},
              {"grid_size", space.grid_size()},
              {"simulations", points.size()},
              {"best", point_json(space, *best)},
              {"references", json::array()},
              {"pareto", json::array()},
              {"points", json::array()}};
  for (std::size_t i = 0; i < compare.size(); ++i)
    doc["references"].push_back({{"policy", compare[i]},
                                 {"feasible", refs[i].feasible},
                                 {"tokens_per_s", refs[i].tokens_per_s},
                                 {"peak_hbm_gib", refs[i].peak_hbm_gib}});
  for (const TunePoint& q : front) doc["pareto"].push_back(point_json(space, q));
  std::ostringstream csv;
  csv << "label,feasible,tokens_per_s,peak_hbm_gib,step_s,error\n";
  for (const TunePoint& q : points) {
    doc["points"].push_back(point_json(space, q));
    csv << csv_quote(space.describe(q.point)) << "," << (q.feasible ? 1 : 0) << "," << q.tokens_per_s << ","
        << q.peak_hbm_gib << "," << q.step_s << "," << csv_quote(q.error) << "\n";
  }
  fs::create_directories(dir);
  core::write_file_atomically((dir / "tune.json").string(), doc.dump(2) + "\n");
  core::write_file_atomically((dir / "points.csv").string(), csv.str());
  core::write_file_atomically((dir / "best.json").string(), space.config_at(best->point).dump(2) + "\n");

  std::printf("# moesys tune %s: %s search, %zu simulations of a grid of %zu\n", name.c_str(), strategy.c_str(),
              points.size(), space.grid_size());
  std::printf("best       %s: %.0f tokens/s, %.1f GiB HBM\n", space.describe(best->point).c_str(), best->tokens_per_s,
              best->peak_hbm_gib);
  for (std::size_t i = 0; i < compare.size(); ++i)
    if (refs[i].feasible)
      std::printf("vs %s: %.0f tokens/s, %.1f GiB HBM; the best is x%.2f\n", compare[i].c_str(), refs[i].tokens_per_s,
                  refs[i].peak_hbm_gib, best->tokens_per_s / refs[i].tokens_per_s);
    else
      std::printf("vs %s: infeasible: %s\n", compare[i].c_str(), refs[i].error.c_str());
  std::printf("Pareto front (peak HBM, tokens/s):\n");
  for (const TunePoint& q : front)
    std::printf("  %6.1f GiB  %10.0f  %s\n", q.peak_hbm_gib, q.tokens_per_s, space.describe(q.point).c_str());
  std::printf("written %s (run the best: moesys train --config %s)\n", dir.string().c_str(),
              (dir / "best.json").string().c_str());
  return 0;
}

const CommandRegistrar kRegistrar("tune", "search policy settings and parallel layouts in simulation (JSON space)",
                                  run_tune);

}  // namespace
}  // namespace moesys::cli
