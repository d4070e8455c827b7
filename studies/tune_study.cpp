#include "studies/tune_study.hpp"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <set>
#include <sstream>

#include "core/error.hpp"
#include "core/output_files.hpp"
#include "policies/training/training_run.hpp"
#include "sim/isolated_run.hpp"
#include "sim/training_simulator.hpp"
#include "studies/result_set.hpp"
#include "studies/study_progress.hpp"
#include "studies/study_runs.hpp"
#include "studies/tune_search.hpp"

namespace moesys::studies {

namespace {

namespace fs = std::filesystem;
namespace tr = policies::training;
using nlohmann::json;

/// A simulated config's score; an infeasible one (memory, layout) comes back as such.
struct Scored {
  bool feasible = false;
  double tokens_per_s = 0, peak_hbm_gib = 0, step_s = 0;
  std::string error;
};

/// Simulates `configs` as the runs of `study`, `options.jobs` at once, each in its own process; with a shard in
/// `options` only its share runs and its file is written (returns false), with merged outcomes nothing runs.
bool simulate(const json& study, const std::string& file, const std::string& name, const std::vector<json>& configs,
              const ExperimentOptions& options, StudyProgress& progress, const std::vector<std::string>& labels,
              std::vector<Scored>& out) {
  out.assign(configs.size(), Scored{});
  std::vector<std::chrono::steady_clock::time_point> started(configs.size(), std::chrono::steady_clock::now());
  return run_study(
      study, file, name, configs.size(), options,
      [&](std::size_t i) {
        const tr::TrainingConfig c = tr::parse_training_config(configs[i], file);
        return tr::run_training(c, tr::sim_simulator(study_calibration(study, file, c.cluster))).summary;
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
}

json point_json(const TuneSpace& space, const TunePoint& p) {
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

}  // namespace

int run_tune_study(const json& spec, const std::string& file, const ExperimentOptions& options,
                   const std::string& strategy_flag) {
  if (!spec.is_object()) throw core::ConfigError(file, "", "expected an object with name, base and space");
  static const std::set<std::string> kKeys = {"kind",     "name",    "description", "base",
                                              "space",    "strategy", "compare",     "calibration"};
  for (auto it = spec.begin(); it != spec.end(); ++it)
    if (!kKeys.count(it.key()))
      throw core::ConfigError(
          file, it.key(),
          "unknown key (valid keys: base, calibration, compare, description, kind, name, space, strategy)");
  if (spec.contains("kind") && spec["kind"] != "tune")
    throw core::ConfigError(file, "kind", "expected \"tune\" (or no kind) in a search file");
  if (!spec.contains("name") || !spec["name"].is_string())
    throw core::ConfigError(file, "name", "expected a string naming the results folder");
  const std::string name = spec["name"];
  check_study_name(name, file);
  if (spec.contains("strategy") && !spec["strategy"].is_string())
    throw core::ConfigError(file, "strategy", "expected descent or grid");
  const std::string strategy = !strategy_flag.empty() ? strategy_flag : spec.value("strategy", std::string("descent"));
  if (strategy != "descent" && strategy != "grid")
    throw core::ConfigError(!strategy_flag.empty() ? "" : file, !strategy_flag.empty() ? "--strategy" : "strategy",
                            "expected descent or grid, got \"" + strategy + "\"");
  if (strategy == "descent" && (options.shard_count > 1 || options.merged))
    throw core::ConfigError("", "--shard",
                            "applies to --strategy grid (a descent picks each sweep from the one before)");
  const fs::path dir = fs::path(options.results_dir) / name;
  core::check_output_dir(dir.string(), "--results");
  // What a shard records: the search file as a study of kind "tune" with the strategy it ran.
  json study = spec;
  study["kind"] = "tune";
  study["strategy"] = strategy;

  const TuneSpace space = parse_tune_space(spec, file);
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
  StudyProgress progress(bound + compare.size(), "tokens/s", options.quiet);
  std::vector<json> ref_configs;
  for (const json& policy : compare_policies) {
    json c = space.base;
    c["policy"] = policy;
    ref_configs.push_back(c);
  }
  // A grid is one batch: the references and its points are the runs of one study (so that it shards); a descent
  // simulates the references first, then each batch it asks for.
  // A shard records the search's run count, which a merge reads back within a study's limit.
  if (options.shard_count > 1 && compare.size() + space.grid_size() > static_cast<std::size_t>(kMaxStudyRuns))
    throw core::ConfigError("", "--shard",
                            "a grid of " + std::to_string(compare.size() + space.grid_size()) +
                                " runs (references and points) exceeds the " + std::to_string(kMaxStudyRuns) +
                                " runs a sharded study may have: narrow the space");
  std::vector<Scored> refs;
  if (strategy == "descent") simulate(study, file, name, ref_configs, options, progress, compare, refs);
  bool complete = true;
  const auto points = tune_search(space, strategy, [&](const std::vector<std::vector<std::size_t>>& batch) {
    std::vector<json> configs = strategy == "grid" ? ref_configs : std::vector<json>{};
    std::vector<std::string> labels = strategy == "grid" ? compare : std::vector<std::string>{};
    const std::size_t first = configs.size();
    for (const auto& q : batch) configs.push_back(space.config_at(q)), labels.push_back(space.describe(q));
    std::vector<Scored> scored;
    complete = simulate(study, file, name, configs, options, progress, labels, scored);
    if (strategy == "grid") refs.assign(scored.begin(), scored.begin() + static_cast<std::ptrdiff_t>(first));
    std::vector<TunePoint> out;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      const Scored& s = scored[first + i];
      out.push_back({batch[i], s.feasible, s.tokens_per_s, s.peak_hbm_gib, s.step_s, s.error});
    }
    return out;
  });
  if (!complete) return 0;  // a shard: its file is written, the merge writes the rest
  const TunePoint* best = best_point(points);
  if (!best) throw core::InfeasibleError("no point of the space fits the cluster (" + points.front().error + ")");
  const auto front = pareto_front(points);

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

namespace {
// Merged shards of a grid search come back through `moesys experiment --merge` or `moesys tune --merge`.
const ExperimentKindRegistrar kRegistrar("tune", [](const json& study, const std::string& file,
                                                    const ExperimentOptions& options) {
  return run_tune_study(study, file, options, "");
});
}  // namespace

}  // namespace moesys::studies
