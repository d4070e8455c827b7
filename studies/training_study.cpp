// The "training" study runner and the report formatting shared with `moesys train`.
#include "studies/training_study.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "core/error.hpp"
#include "core/interrupts.hpp"
#include "core/output_files.hpp"
#include "policies/training/training_run.hpp"
#include "sim/isolated_run.hpp"
#include "sim/training_simulator.hpp"
#include "studies/report_page.hpp"
#include "studies/result_set.hpp"
#include "studies/study_progress.hpp"
#include "studies/study_runs.hpp"

namespace moesys::studies::training_cli {

namespace fs = std::filesystem;
using nlohmann::json;
namespace tr = policies::training;

namespace {

std::string fmt(const char* f, double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, x);
  return buf;
}

struct PlannedRun {
  std::string case_label, variant;
  json config;
};

std::string label_of(const PlannedRun& r) {
  if (r.case_label.empty()) return r.variant;
  if (r.variant.empty()) return r.case_label;
  return r.case_label + " / " + r.variant;
}

/// Strips "case" / "variant" from a patch into the run's labels; returns the merge patch that is left.
json take_labels(json patch, const std::string& file, const std::string& path, PlannedRun& run) {
  if (!patch.is_object()) throw core::ConfigError(file, path, "expected an object (a merge patch of the config)");
  for (const char* key : {"case", "variant"}) {
    if (!patch.contains(key)) continue;
    if (!patch[key].is_string()) throw core::ConfigError(file, path + "." + key, "expected a string label");
    std::string& dst = std::string(key) == "case" ? run.case_label : run.variant;
    if (!dst.empty()) dst += ' ';
    dst += patch[key].get<std::string>();
    patch.erase(key);
  }
  return patch;
}

std::string num(double x);

std::vector<PlannedRun> expand(const json& study, const std::string& file) {
  const json base = study.value("base", json::object());
  if (!base.is_object()) throw core::ConfigError(file, "base", "expected a training config object");
  std::vector<PlannedRun> runs;
  if (study.contains("grid")) {
    const json& grid = study["grid"];
    if (!grid.is_array() || grid.empty()) throw core::ConfigError(file, "grid", "expected a non-empty array of axes");
    // The grid's size is known before it is expanded: a short file can describe 10^8 runs.
    double size = 1;
    for (const json& axis : grid) size *= axis.is_array() ? static_cast<double>(axis.size()) : 1.0;
    if (size > kMaxStudyRuns)
      throw core::ConfigError(file, "grid",
                              "the grid expands to " + num(size) + " runs; a study runs at most " +
                                  std::to_string(kMaxStudyRuns) + " (split it into several studies)");
    std::vector<PlannedRun> partial = {{"", "", base}};
    for (std::size_t a = 0; a < grid.size(); ++a) {
      const std::string ap = "grid[" + std::to_string(a) + "]";
      if (!grid[a].is_array() || grid[a].empty())
        throw core::ConfigError(file, ap, "expected a non-empty array of patches");
      std::vector<PlannedRun> next;
      for (const PlannedRun& p : partial)
        for (std::size_t i = 0; i < grid[a].size(); ++i) {
          PlannedRun r = p;
          r.config.merge_patch(take_labels(grid[a][i], file, ap + "[" + std::to_string(i) + "]", r));
          next.push_back(std::move(r));
        }
      partial = std::move(next);
    }
    runs = std::move(partial);
  }
  if (study.contains("runs")) {
    const json& list = study["runs"];
    if (!list.is_array() || list.empty())
      throw core::ConfigError(file, "runs", "expected a non-empty array of patches");
    for (std::size_t i = 0; i < list.size(); ++i) {
      PlannedRun r{"", "", base};
      r.config.merge_patch(take_labels(list[i], file, "runs[" + std::to_string(i) + "]", r));
      runs.push_back(std::move(r));
    }
  }
  if (runs.empty()) throw core::ConfigError(file, "grid", "expected \"grid\" or \"runs\" describing at least one run");
  if (runs.size() > static_cast<std::size_t>(kMaxStudyRuns))
    throw core::ConfigError(file, "runs",
                            std::to_string(runs.size()) + " runs; a study runs at most " +
                                std::to_string(kMaxStudyRuns) + " (split it into several studies)");
  return runs;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char ch : s) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return q + "\"";
}

const std::vector<std::string>& csv_columns() {
  static const std::vector<std::string> kColumns = {"label",
                                                    "case",
                                                    "variant",
                                                    "status",
                                                    "preset",
                                                    "policy",
                                                    "gpus",
                                                    "nodes",
                                                    "experts",
                                                    "params_b",
                                                    "placement",
                                                    "micro_batches",
                                                    "tokens_per_s",
                                                    "samples_per_s",
                                                    "tflops_per_gpu",
                                                    "step_s",
                                                    "compute_s",
                                                    "exposed_comm_s",
                                                    "exposed_copy_s",
                                                    "idle_s",
                                                    "peak_hbm_gib",
                                                    "peak_dram_gib",
                                                    "peak_ssd_gib",
                                                    "net_intra_node_gb",
                                                    "net_same_leaf_gb",
                                                    "net_cross_spine_gb",
                                                    "dropped_fraction",
                                                    "rank_imbalance",
                                                    "padding_fraction",
                                                    "simgrid_flows",
                                                    "error"};
  return kColumns;
}

std::string num(double x) {
  std::ostringstream o;
  o.precision(6);
  o << x;
  return o.str();
}

std::vector<std::string> csv_row(const json& r) {
  std::map<std::string, std::string> v;
  v["label"] = r["label"];
  v["case"] = r["case"];
  v["variant"] = r["variant"];
  v["status"] = r["status"];
  v["error"] = r.value("error", "");
  if (r.contains("summary")) {
    const json& s = r["summary"];
    v["preset"] = s["policy"]["preset"];
    v["policy"] = s["policy_name"];
    v["gpus"] = std::to_string(s["gpus"].get<int>());
    v["nodes"] = std::to_string(s["nodes"].get<int>());
    v["experts"] = std::to_string(s["model"]["experts"].get<int>());
    v["params_b"] = num(s["params"].get<double>() / 1e9);
    v["placement"] = s.value("placement", "");
    v["micro_batches"] = std::to_string(s["micro_batches"].get<int>());
    v["tokens_per_s"] = num(s["tokens_per_s"]);
    v["samples_per_s"] = num(s["samples_per_s"]);
    v["tflops_per_gpu"] = num(s["model_tflops_per_gpu"]);
    v["step_s"] = num(s["step_s"]);
    v["compute_s"] = num(s["breakdown_s"]["compute"]);
    v["exposed_comm_s"] = num(s["breakdown_s"]["exposed_comm"]);
    v["exposed_copy_s"] = num(s["breakdown_s"]["exposed_copy"]);
    v["idle_s"] = num(s["breakdown_s"]["idle"]);
    v["peak_hbm_gib"] = num(s["memory"]["peak_hbm_gib"]);
    v["peak_dram_gib"] = num(s["memory"]["peak_dram_gib"]);
    v["peak_ssd_gib"] = num(s["memory"]["peak_ssd_gib"]);
    v["net_intra_node_gb"] = num(s["network_gb_per_step"]["intra_node"]);
    v["net_same_leaf_gb"] = num(s["network_gb_per_step"]["same_leaf"]);
    v["net_cross_spine_gb"] = num(s["network_gb_per_step"]["cross_spine"]);
    v["dropped_fraction"] = num(s["gate"]["dropped_fraction"]);
    if (s["gate"].contains("rank_imbalance"))  // results written before it was measured leave the cell empty
      v["rank_imbalance"] = num(s["gate"]["rank_imbalance"].get<double>());
    v["padding_fraction"] = num(s["gate"]["padding_fraction"]);
    v["simgrid_flows"] = std::to_string(s["simulator"]["flows"].get<long long>());
  } else {
    v["preset"] = r["config_policy"].value("preset", "");
    v["policy"] = r.value("config_policy_name", "");
  }
  std::vector<std::string> row;
  for (const auto& c : csv_columns()) row.push_back(csv_field(v[c]));
  return row;
}

std::string join_row(const std::vector<std::string>& cells) {
  std::string line;
  for (std::size_t i = 0; i < cells.size(); ++i) line += (i ? "," : "") + cells[i];
  return line + "\n";
}

/// Ratios of every variant to the baseline of the same case: the first of `baselines` that the case has.
std::string ratios_csv(const std::vector<json>& rows, const std::vector<std::string>& baselines,
                       std::vector<json>& out) {
  std::string csv =
      "case,variant,baseline,tokens_per_s,baseline_tokens_per_s,throughput_ratio,peak_hbm_gib,"
      "baseline_peak_hbm_gib,memory_ratio\n";
  for (const json& r : rows) {
    if (r["status"] != "ok") continue;
    const json* base = nullptr;
    for (const std::string& b : baselines) {
      for (const json& c : rows)
        if (c["status"] == "ok" && c["variant"] == b && c["case"] == r["case"]) base = &c;
      if (base) break;
    }
    if (!base || base == &r) continue;
    const json& b = *base;
    const double t = r["summary"]["tokens_per_s"], tb = b["summary"]["tokens_per_s"];
    const double m = r["summary"]["memory"]["peak_hbm_gib"], mb = b["summary"]["memory"]["peak_hbm_gib"];
    csv += join_row({csv_field(r["case"]), csv_field(r["variant"]), csv_field(b["variant"]), num(t), num(tb),
                     num(t / tb), num(m), num(mb), num(m / mb)});
    out.push_back({{"case", r["case"]},
                   {"variant", r["variant"]},
                   {"baseline", b["variant"]},
                   {"throughput_ratio", t / tb},
                   {"memory_ratio", m / mb}});
  }
  return csv;
}

bool run_plots(const fs::path& dir) {
  const int status = core::run_child_process(
      {MOESYS_PYTHON, std::string(MOESYS_SOURCE_DIR) + "/scripts/plot_training.py", dir.string()});
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace

int run_training_study(const json& study, const std::string& file, const ExperimentOptions& options) {
  static const std::set<std::string> kKeys = {"kind", "name", "description", "base",
                                              "grid", "runs", "baseline",    "calibration"};
  for (auto it = study.begin(); it != study.end(); ++it)
    if (!kKeys.count(it.key()))
      throw core::ConfigError(
          file, it.key(), "unknown key (valid keys: base, baseline, calibration, description, grid, kind, name, runs)");
  if (!study.contains("name") || !study["name"].is_string())
    throw core::ConfigError(file, "name", "expected a string naming the results folder");
  const std::string name = study["name"];
  check_study_name(name, file);
  if (study.contains("description") && !study["description"].is_string())
    throw core::ConfigError(file, "description", "expected a string, got " + study["description"].dump());
  const fs::path dir = fs::path(options.results_dir) / name;
  core::check_output_dir(dir.string(), "--results");
  std::vector<std::string> baselines;
  if (study.contains("baseline")) {
    const json& b = study["baseline"];
    if (b.is_string()) baselines.push_back(b);
    if (b.is_array())
      for (const json& x : b)
        if (x.is_string()) baselines.push_back(x);
    if (baselines.empty() || (b.is_array() && baselines.size() != b.size()))
      throw core::ConfigError(file, "baseline", "expected a variant label or an array of them");
  }
  // Every run's configuration is parsed before anything runs, so bad input fails fast and writes nothing.
  std::vector<PlannedRun> runs = expand(study, file);
  std::vector<tr::TrainingConfig> configs;
  std::vector<core::Calibration> calibrations;  // each run's GPU family's table, with the study's file over it
  for (const PlannedRun& r : runs) {
    configs.push_back(tr::parse_training_config(r.config, file));
    calibrations.push_back(study_calibration(study, file, configs.back().cluster));
  }
  for (const std::string& b : baselines)
    if (std::none_of(runs.begin(), runs.end(), [&](const PlannedRun& r) { return r.variant == b; }))
      throw core::ConfigError(file, "baseline", "no run has the variant \"" + b + "\"");

  std::vector<json> rows(runs.size());
  bool failed = false;
  const auto study_start = std::chrono::steady_clock::now();
  std::vector<std::chrono::steady_clock::time_point> started(runs.size(), study_start);
  StudyProgress progress(runs.size(), "tokens/s", options.quiet);
  // Up to options.jobs runs at once, each in its own process; rows keep the study's order, so the result files do
  // not depend on the number of jobs.
  const bool whole = run_study(
      study, file, name, runs.size(), options,
      [&](std::size_t i) { return tr::run_training(configs[i], tr::sim_simulator(calibrations[i])).summary; },
      [&](std::size_t i, sim::IsolatedOutcome&& result) {
        json row = {{"label", label_of(runs[i])},
                    {"case", runs[i].case_label},
                    {"variant", runs[i].variant},
                    {"config", runs[i].config},
                    {"config_policy", tr::to_json(configs[i].policy)},
                    {"config_policy_name", tr::describe(configs[i].policy)}};
        std::string outcome;
        try {
          if (result.error) std::rethrow_exception(result.error);
          row["summary"] = std::move(result.value);
          // Result files stay byte-identical from run to run: the wall time goes to the progress line only.
          row["summary"]["simulator"].erase("wall_s");
          row["status"] = "ok";
          outcome = fmt("%.0f tokens/s", row["summary"]["tokens_per_s"].get<double>()) + ", step " +
                    fmt("%.3f s", row["summary"]["step_s"].get<double>()) + ", peak HBM " +
                    fmt("%.1f GiB", row["summary"]["memory"]["peak_hbm_gib"].get<double>());
        } catch (const core::InfeasibleError& e) {
          row["status"] = "infeasible";
          row["error"] = e.what();
          outcome = std::string("infeasible: ") + e.what();
        } catch (const core::RuntimeFailure& e) {
          row["status"] = "failed";
          row["error"] = e.what();
          outcome = std::string("failed: ") + e.what();
          failed = true;
        }
        const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - started[i]).count();
        progress.finished(row["label"].get<std::string>(), outcome, wall,
                          row["status"] == "ok" ? row["summary"]["tokens_per_s"].get<double>() : -1.0);
        rows[i] = std::move(row);
      },
      [&](std::size_t i) { started[i] = std::chrono::steady_clock::now(); });
  if (!whole) return 0;  // one shard: its file is written, the study's files come from --merge

  ResultSet results(dir);
  std::string csv = join_row(csv_columns());
  for (const json& r : rows) csv += join_row(csv_row(r));
  results.add("runs.csv", csv);
  json ratios = json::array();
  if (!baselines.empty()) {
    std::vector<json> list;
    results.add("ratios.csv", ratios_csv(rows, baselines, list));
    ratios = list;
  }
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - study_start).count();
  json doc = {{"name", name},     {"description", study.value("description", "")},
              {"file", file},     {"baseline", baselines},
              {"ratios", ratios}, {"runs", rows}};
  results.add("runs.json", doc.dump(1) + "\n");
  const bool plotted = !options.plots || run_plots(results.staging());
  write_report_page(results.staging(), study, "build/moesys experiment " + file);
  results.commit();

  std::printf("# %s: %zu runs simulated in %.1f s wall; results in %s (open index.html)\n", name.c_str(), rows.size(),
              total, dir.string().c_str());
  std::printf("%-40s %-10s %6s %14s %10s %10s\n", "run", "status", "gpus", "tokens/s", "step (s)", "HBM (GiB)");
  for (const json& r : rows) {
    if (r["status"] != "ok") {
      std::printf("%-40s %-10s\n", r["label"].get<std::string>().c_str(), r["status"].get<std::string>().c_str());
      continue;
    }
    const json& s = r["summary"];
    std::printf("%-40s %-10s %6d %14.0f %10.4f %10.1f\n", r["label"].get<std::string>().c_str(), "ok",
                s["gpus"].get<int>(), s["tokens_per_s"].get<double>(), s["step_s"].get<double>(),
                s["memory"]["peak_hbm_gib"].get<double>());
  }
  for (const json& q : ratios)
    std::printf("ratio %s: %s vs %s: throughput x%.3f, peak HBM x%.3f\n", q["case"].get<std::string>().c_str(),
                q["variant"].get<std::string>().c_str(), q["baseline"].get<std::string>().c_str(),
                q["throughput_ratio"].get<double>(), q["memory_ratio"].get<double>());
  if (!plotted) {
    std::fprintf(stderr, "moesys: failure: plotting %s failed (scripts/plot_training.py)\n", dir.string().c_str());
    return 1;
  }
  return failed ? 1 : 0;
}

namespace {
const ExperimentKindRegistrar kRegistrar("training", run_training_study);
}  // namespace

}  // namespace moesys::studies::training_cli
