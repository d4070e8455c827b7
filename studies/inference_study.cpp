// The "inference" experiment kind: a list of generation runs (policies, K, batch sizes, clusters) simulated one
// per forked child, written to results/<name>/ as runs.csv, runs.json and summary.md (throughput against the
// study's baseline, next to the paper's claim), then plotted by scripts/plot_inference.py.
//
// {"kind": "inference", "name": "...", "description": "...",
//  "cluster": {"gpu": "a100-40g", "nodes": 1, "gpus_per_node": 1, "nics_per_node": 1} | "topologies/x.json",
//  "calibration": "file.json",
//  "defaults": {<run keys>},
//  "runs": [{<run keys>; "ring_slots" and "batch" may be lists, expanded into one run each}, ...],
//  "compare": {"baseline": "<preset>", "paper_speedup": 1.13, "paper_claim": "..."}}
// Run keys: preset, policy, model, ring_slots, host_memory, gpus, batch, prompt_tokens, output_tokens,
// all_to_all, workload, cluster, replicas (spare expert slots, as training's policy.replicas). Every run is validated and its memory plan checked before the first simulation,
// so bad input exits 2 before anything is written.
#include "studies/inference_study.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>

#include "core/error.hpp"
#include "core/interrupts.hpp"
#include "core/json_input.hpp"
#include "core/output_files.hpp"
#include "sim/isolated_run.hpp"
#include "sim/simulation.hpp"
#include "policies/training/policy.hpp"
#include "studies/experiment_kinds.hpp"
#include "studies/report_page.hpp"
#include "studies/result_set.hpp"
#include "studies/study_progress.hpp"
#include "studies/study_runs.hpp"

namespace moesys::studies {

namespace inf = policies::inference;
namespace fs = std::filesystem;
using nlohmann::json;

double host_device_bytes_per_s(const core::ClusterSpec& spec, const core::Calibration& cal) {
  return spec.node.pcie.bytes_per_s() * cal.pcie_efficiency;
}

inf::InferenceMetrics simulate_inference(const inf::PreparedRun& run, const core::ClusterSpec& spec,
                                         const core::Calibration& cal, const std::string& trace_path) {
  std::vector<inf::RankRecord> records(static_cast<std::size_t>(run.config.gpus));
  sim::SimOptions options;
  options.calibration = cal;
  options.coalesce_kernels = trace_path.empty();  // a trace shows every kernel
  const sim::SimResult result = sim::simulate(spec, run.config.gpus, inf::generation_program(run, records), options);
  inf::RuntimeOutcome outcome;
  for (const auto& r : result.ranks) outcome.peak_hbm_bytes.push_back(r.memory.peak_bytes(core::Tier::hbm));
  outcome.peak_hbm_by_tag = result.ranks.front().memory.peak_by_tag(core::Tier::hbm);
  if (!trace_path.empty()) {
    std::vector<core::Span> spans;
    for (const auto& r : result.ranks) spans.insert(spans.end(), r.spans.begin(), r.spans.end());
    core::write_chrome_trace(spans, trace_path);
  }
  return inf::summarize(run, records, outcome, host_device_bytes_per_s(spec, cal));
}

namespace {

const std::set<std::string> kRunKeys = {"preset",        "policy",     "model",    "ring_slots",
                                        "host_memory",   "gpus",       "batch",    "prompt_tokens",
                                        "output_tokens", "all_to_all", "workload", "cluster", "replicas"};

struct StudyRun {
  inf::PreparedRun run;
  core::ClusterSpec spec;
};

struct Study {
  std::string name, description;
  std::string baseline, paper_claim;
  std::optional<double> paper_speedup;
  bool skip_infeasible = false;      // grids of K x batch have corners that do not fit: list them, run the rest
  std::vector<std::string> skipped;  // why each skipped run cannot fit
  std::vector<StudyRun> runs;
};

std::string joined(const std::set<std::string>& keys) {
  std::string s;
  for (const auto& k : keys) s += (s.empty() ? "" : ", ") + k;
  return s;
}

void reject_unknown(const json& j, const std::set<std::string>& known, const std::string& file,
                    const std::string& base) {
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!known.count(it.key()))
      throw core::ConfigError(file, base.empty() ? it.key() : base + "." + it.key(),
                              "unknown key (valid keys: " + joined(known) + ")");
}

core::ClusterSpec parse_cluster_value(const json& j, const std::string& file, const std::string& path) {
  if (j.is_string()) {
    const std::string topology = resolve_study_path(j.get<std::string>(), file);
    std::error_code no_file;
    if (!fs::is_regular_file(topology, no_file))  // named here: the study's key is what the user must edit
      throw core::ConfigError(file, path, "no cluster description at \"" + topology + "\"");
    return core::load_cluster_file(topology);
  }
  if (!j.is_object()) throw core::ConfigError(file, path, "expected a topology file name or generator options");
  reject_unknown(j, {"gpu", "nodes", "gpus_per_node", "nics_per_node", "nic_gbps"}, file, path);
  core::ClusterGeneratorOptions o;
  auto integer = [&](const char* key, int fallback) {
    if (!j.contains(key)) return fallback;
    const json& v = j[key];
    const bool in_range = v.is_number_integer() && (v.is_number_unsigned() ? v.get<std::uint64_t>() <= (1u << 30)
                                                                           : v.get<std::int64_t>() <= (1 << 30));
    if (!in_range) throw core::ConfigError(file, path + "." + key, "expected an integer up to 2^30, got " + v.dump());
    return static_cast<int>(v.get<std::int64_t>());
  };
  o.nodes = integer("nodes", o.nodes);
  o.gpus_per_node = integer("gpus_per_node", o.gpus_per_node);
  o.nics_per_node = integer("nics_per_node", o.nics_per_node);
  if (j.contains("nic_gbps")) {
    if (!j["nic_gbps"].is_number()) throw core::ConfigError(file, path + ".nic_gbps", "expected a number");
    o.nic_gbits_per_s = j["nic_gbps"].get<double>();
  }
  if (j.contains("gpu")) {
    if (!j["gpu"].is_string()) throw core::ConfigError(file, path + ".gpu", "expected a string");
    o.gpu = j["gpu"].get<std::string>();
  }
  try {
    return core::generate_cluster(o);
  } catch (const core::ConfigError& e) {  // the generator names its flags; name the JSON keys instead
    std::string key = e.json_path().substr(e.json_path().find_first_not_of('-'));
    for (char& ch : key)
      if (ch == '-') ch = '_';
    throw core::ConfigError(file, path + "." + key, e.message());
  }
}

int integer_of(const json& v, const inf::FieldNamer& names, const std::string& key) {
  if (!v.is_number_integer()) names.fail(key, "expected an integer, got " + v.dump());
  const auto x = v.get<long long>();
  if (x < -1000000000LL || x > 1000000000LL) names.fail(key, "expected an integer in range, got " + v.dump());
  return static_cast<int>(x);
}

std::string string_of(const json& v, const inf::FieldNamer& names, const std::string& key) {
  if (!v.is_string()) names.fail(key, "expected a string, got " + v.dump());
  return v.get<std::string>();
}

/// One entry of "runs", merged over "defaults" and the top level, expanded over its lists of K and batch sizes.
void add_runs(Study& study, const json& top, const json& defaults, const json& entry, const std::string& base,
              const std::string& file) {
  if (!entry.is_object()) throw core::ConfigError(file, base, "expected an object");
  reject_unknown(entry, kRunKeys, file, base);
  // Remember where each key came from so that errors name the place the user must edit.
  json merged = json::object();
  std::map<std::string, std::string> origin;
  if (top.contains("cluster")) merged["cluster"] = top["cluster"], origin["cluster"] = "";
  for (auto it = defaults.begin(); it != defaults.end(); ++it)
    merged[it.key()] = it.value(), origin[it.key()] = "defaults";
  for (auto it = entry.begin(); it != entry.end(); ++it) merged[it.key()] = it.value(), origin[it.key()] = base;
  const inf::FieldNamer names{file, [origin, base](const std::string& key) {
                                auto it = origin.find(key);
                                const std::string where = it == origin.end() ? base : it->second;
                                return where.empty() ? key : where + "." + key;
                              }};

  if (!merged.contains("cluster")) throw core::ConfigError(file, "cluster", "missing required key");
  const core::ClusterSpec spec = parse_cluster_value(merged["cluster"], file, names.path("cluster"));
  inf::InferenceConfig c;
  if (!merged.contains("model")) names.fail("model", "missing required key");
  c.model = inf::parse_inference_model(merged["model"], file, names.path("model"));
  if (merged.contains("policy")) c.policy = string_of(merged["policy"], names, "policy");
  c.preset = merged.contains("preset") ? string_of(merged["preset"], names, "preset") : c.policy;
  if (c.preset.empty() ||
      c.preset.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-") !=
          std::string::npos)
    names.fail("preset", "expected a label of letters, digits and . _ + -, got \"" + c.preset + "\"");
  if (merged.contains("host_memory"))
    c.host_memory = inf::parse_host_memory(string_of(merged["host_memory"], names, "host_memory"), names);
  if (merged.contains("all_to_all"))
    c.all_to_all = inf::parse_all_to_all(string_of(merged["all_to_all"], names, "all_to_all"), names);
  c.gpus = merged.contains("gpus") ? integer_of(merged["gpus"], names, "gpus") : spec.total_gpus();
  if (merged.contains("prompt_tokens")) c.prompt_tokens = integer_of(merged["prompt_tokens"], names, "prompt_tokens");
  if (merged.contains("output_tokens")) c.output_tokens = integer_of(merged["output_tokens"], names, "output_tokens");
  if (merged.contains("workload")) c.workload = merged["workload"];
  if (merged.contains("replicas"))
    c.replicas = policies::training::parse_replicas(merged["replicas"], {}, file, names.path("replicas"));
  if (c.workload.is_object() && c.workload.contains("file") && c.workload["file"].is_string())
    c.workload["file"] = resolve_study_path(c.workload["file"].get<std::string>(), file);

  auto list_of = [&](const std::string& key, int fallback) {
    std::vector<int> values;
    if (!merged.contains(key)) return std::vector<int>{fallback};
    const json& v = merged[key];
    if (!v.is_array()) return std::vector<int>{integer_of(v, names, key)};
    if (v.empty()) names.fail(key, "expected a non-empty list");
    for (const json& x : v) values.push_back(integer_of(x, names, key));
    return values;
  };
  // Only the ring has slots: a list of K inherited by another policy must not duplicate its runs.
  const std::vector<int> slots = c.policy == "moesys" ? list_of("ring_slots", c.ring_slots) : std::vector<int>{0};
  const std::vector<int> batches = list_of("batch", c.batch);
  const std::size_t total = study.runs.size() + study.skipped.size() + batches.size() * slots.size();
  if (total > static_cast<std::size_t>(kMaxStudyRuns))
    throw core::ConfigError(file, base,
                            "the study expands to " + std::to_string(total) + " runs; a study runs at most " +
                                std::to_string(kMaxStudyRuns) + " (split it into several studies)");
  for (int batch : batches)
    for (int k : slots) {
      inf::InferenceConfig run = c;
      run.batch = batch;
      run.ring_slots = k;
      try {
        study.runs.push_back({inf::prepare_run(run, spec, names), spec});
      } catch (const core::InfeasibleError& e) {
        const std::string ring = c.policy == "moesys" ? ", K=" + std::to_string(k) : "";
        const std::string what =
            file + ": " + base + " (" + run.preset + ring + ", batch " + std::to_string(batch) + "): " + e.what();
        if (!study.skip_infeasible) throw core::InfeasibleError(what);
        study.skipped.push_back(what);
      }
    }
}

Study parse_study(const json& j, const std::string& file) {
  reject_unknown(
      j, {"kind", "name", "description", "cluster", "calibration", "defaults", "runs", "compare", "skip_infeasible"},
      file, "");
  Study s;
  if (j.contains("skip_infeasible")) {
    if (!j["skip_infeasible"].is_boolean()) throw core::ConfigError(file, "skip_infeasible", "expected true or false");
    s.skip_infeasible = j["skip_infeasible"].get<bool>();
  }
  if (!j.contains("name") || !j["name"].is_string() || j["name"].get<std::string>().empty())
    throw core::ConfigError(file, "name", "expected a non-empty string naming results/<name>/");
  s.name = j["name"].get<std::string>();
  check_study_name(s.name, file);
  if (j.contains("description")) {
    if (!j["description"].is_string()) throw core::ConfigError(file, "description", "expected a string");
    s.description = j["description"].get<std::string>();
  }
  const json defaults = j.value("defaults", json::object());
  if (!defaults.is_object()) throw core::ConfigError(file, "defaults", "expected an object");
  reject_unknown(defaults, kRunKeys, file, "defaults");
  if (!j.contains("runs") || !j["runs"].is_array() || j["runs"].empty())
    throw core::ConfigError(file, "runs", "expected a non-empty list of runs");
  for (std::size_t i = 0; i < j["runs"].size(); ++i)
    add_runs(s, j, defaults, j["runs"][i], "runs[" + std::to_string(i) + "]", file);
  if (s.runs.empty()) throw core::InfeasibleError(file + ": no run fits (first: " + s.skipped.front() + ")");
  for (const StudyRun& r : s.runs) study_calibration(j, file, r.spec);  // a bad file fails before anything runs
  if (j.contains("compare")) {
    const json& c = j["compare"];
    if (!c.is_object()) throw core::ConfigError(file, "compare", "expected an object");
    reject_unknown(c, {"baseline", "paper_speedup", "paper_claim"}, file, "compare");
    if (!c.contains("baseline") || !c["baseline"].is_string())
      throw core::ConfigError(file, "compare.baseline", "expected the preset to compare against");
    s.baseline = c["baseline"].get<std::string>();
    bool found = false;
    for (const auto& r : s.runs) found = found || r.run.config.preset == s.baseline;
    if (!found) throw core::ConfigError(file, "compare.baseline", "no run has preset \"" + s.baseline + "\"");
    if (c.contains("paper_speedup")) {
      if (!c["paper_speedup"].is_number() || !(c["paper_speedup"].get<double>() > 0))
        throw core::ConfigError(file, "compare.paper_speedup", "expected a positive number");
      s.paper_speedup = c["paper_speedup"].get<double>();
    }
    if (c.contains("paper_claim")) {
      if (!c["paper_claim"].is_string()) throw core::ConfigError(file, "compare.paper_claim", "expected a string");
      s.paper_claim = c["paper_claim"].get<std::string>();
    }
  }
  return s;
}

std::string row_label(const json& r) {
  std::string label = r["preset"].get<std::string>();
  if (r["policy"] == "moesys") label += " K=" + std::to_string(r["ring_slots"].get<int>());
  return label;
}

/// What the run does, for the reader of the table: the policy, its host memory, the all-to-all across GPUs.
std::string policy_of(const json& r) {
  std::string p = r["policy"].get<std::string>();
  if (p == "deepspeed") p += " (" + r["host_memory"].get<std::string>() + ")";
  if (r["gpus"].get<int>() > 1) p += ", " + r["all_to_all"].get<std::string>() + " a2a";
  return p;
}

std::string scenario_of(const json& r, const std::string& cluster) {
  return r["model"].get<std::string>() + " on " + std::to_string(r["gpus"].get<int>()) + " x " + cluster + ", batch " +
         std::to_string(r["batch"].get<int>()) + ", prompt " + std::to_string(r["prompt_tokens"].get<int>()) +
         ", output " + std::to_string(r["output_tokens"].get<int>());
}

/// Markdown table: each scenario's runs with throughput relative to the study's baseline preset.
std::string summary_markdown(const Study& s, const std::vector<json>& rows) {
  std::vector<std::string> order;
  std::map<std::string, std::vector<std::size_t>> by_scenario;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const std::string key = scenario_of(rows[i], s.runs[i].spec.node.gpu.model);
    if (!by_scenario.count(key)) order.push_back(key);
    by_scenario[key].push_back(i);
  }
  std::string md = "# " + s.name + "\n\n" + (s.description.empty() ? "" : s.description + "\n\n");
  md += "| scenario | run | policy | tokens/s | vs " + (s.baseline.empty() ? std::string("first run") : s.baseline) +
        " | TPOT p50 (ms) | peak HBM (GiB) | PCIe bound reached |\n|---|---|---|---:|---:|---:|---:|---:|\n";
  char buf[512];
  for (const auto& key : order) {
    const auto& idx = by_scenario[key];
    double base = rows[idx.front()]["tokens_per_s"].get<double>();
    for (auto i : idx)
      if (!s.baseline.empty() && rows[i]["preset"] == s.baseline) {
        base = rows[i]["tokens_per_s"].get<double>();
        break;
      }
    for (auto i : idx) {
      const json& r = rows[i];
      const std::string bound =
          r["pcie_bound_fraction"].is_null()
              ? "-"
              : std::to_string(static_cast<int>(r["pcie_bound_fraction"].get<double>() * 100 + 0.5)) + "%";
      std::snprintf(buf, sizeof buf, "| %s | %s | %s | %.2f | %+.1f%% | %.1f | %.1f | %s |\n", key.c_str(),
                    row_label(r).c_str(), policy_of(r).c_str(), r["tokens_per_s"].get<double>(),
                    (r["tokens_per_s"].get<double>() / base - 1) * 100,
                    r["tpot_p50_ms"].is_null() ? 0.0 : r["tpot_p50_ms"].get<double>(), r["peak_hbm_gib"].get<double>(),
                    bound.c_str());
      md += buf;
    }
  }
  if (!s.skipped.empty()) md += "\nSkipped (do not fit in GPU memory):\n\n";
  for (const auto& why : s.skipped) md += "- " + why + "\n";
  if (s.paper_speedup) {
    std::snprintf(buf, sizeof buf, "\nPaper: %+.0f%% throughput vs %s%s%s.\n", (*s.paper_speedup - 1) * 100,
                  s.baseline.c_str(), s.paper_claim.empty() ? "" : " - ", s.paper_claim.c_str());
    md += buf;
  }
  return md;
}

void run_plots(const fs::path& dir) {
  const std::string python = MOESYS_PYTHON;
  const std::string script = std::string(MOESYS_SOURCE_DIR) + "/scripts/plot_inference.py";
  const int status = core::run_child_process({python, script, dir.string()});
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw core::RuntimeFailure(python + " " + script + " failed (exit " +
                               std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) +
                               "); rerun with --no-plots to skip the plots");
}

int run_inference_study(const json& j, const std::string& file, const ExperimentOptions& options) {
  const Study study = parse_study(j, file);  // everything validated before the first simulation
  const fs::path dir = fs::path(options.results_dir) / study.name;
  core::check_output_dir(dir.string(), "--results");
  if (!options.quiet)
    for (const auto& why : study.skipped) std::fprintf(stderr, "skipped (does not fit) %s\n", why.c_str());
  std::vector<json> rows(study.runs.size());
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::chrono::steady_clock::time_point> started(study.runs.size(), t0);
  StudyProgress progress(study.runs.size(), "tokens/s", options.quiet);
  // Up to options.jobs runs at once; rows keep the study's order (the files do not depend on the number of jobs).
  const bool whole = run_study(
      j, file, study.name, study.runs.size(), options,
      [&](std::size_t i) {
        const StudyRun& r = study.runs[i];
        return inf::run_to_json(r.run, simulate_inference(r.run, r.spec, study_calibration(j, file, r.spec)));
      },
      [&](std::size_t i, sim::IsolatedOutcome&& result) {
        if (result.error) std::rethrow_exception(result.error);
        const StudyRun& r = study.runs[i];
        json row = std::move(result.value);
        row["cluster"] = r.spec.name;
        char outcome[96];
        std::snprintf(outcome, sizeof outcome, "%.3g tokens/s, peak HBM %.1f GiB", row["tokens_per_s"].get<double>(),
                      row["peak_hbm_gib"].get<double>());
        progress.finished(row_label(row) + ", " + std::to_string(r.run.config.gpus) + " GPU(s), batch " +
                              std::to_string(r.run.config.batch),
                          outcome, std::chrono::duration<double>(std::chrono::steady_clock::now() - started[i]).count(),
                          row["tokens_per_s"].get<double>());
        rows[i] = std::move(row);
      },
      [&](std::size_t i) { started[i] = std::chrono::steady_clock::now(); });
  if (!whole) return 0;  // one shard: its file is written, the study's files come from --merge

  ResultSet results(dir);
  std::string csv = inf::csv_header();
  for (const json& r : rows) csv += inf::csv_row(r);
  json doc = {{"study", study.name}, {"description", study.description}, {"source", file}, {"baseline", study.baseline},
              {"runs", rows},        {"skipped", study.skipped}};
  if (study.paper_speedup) doc["paper_speedup"] = *study.paper_speedup;
  const std::string summary = summary_markdown(study, rows);
  results.add("runs.csv", csv);
  results.add("runs.json", doc.dump(1) + "\n");
  results.add("summary.md", summary);
  if (options.plots) run_plots(results.staging());
  write_report_page(results.staging(), j, "build/moesys experiment " + file);
  results.commit();
  std::printf("%s\n", summary.c_str());
  if (!options.quiet)
    std::fprintf(stderr, "wrote %s/{index.html,runs.csv,runs.json,summary.md%s} in %.1f s\n", dir.c_str(),
                 options.plots ? ",*.png" : "",
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return 0;
}

const ExperimentKindRegistrar kRegistrar("inference", run_inference_study);

}  // namespace
}  // namespace moesys::studies
