#include "studies/study_runs.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <regex>
#include <set>

#include "core/error.hpp"
#include "core/json_input.hpp"
#include "core/output_files.hpp"
#include "studies/result_set.hpp"

namespace moesys::studies {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int kShardFormat = 1;

std::string shard_file_name(int index, int count) {
  return "shard-" + std::to_string(index) + "-of-" + std::to_string(count) + ".json";
}

void write_shard(const json& study, const std::string& file, const std::string& name, std::size_t count,
                 const ExperimentOptions& options, const std::map<std::size_t, json>& replies) {
  json by_run = json::object();
  for (const auto& [i, reply] : replies) by_run[std::to_string(i)] = reply;
  const json doc = {{"moesys_shard", kShardFormat},
                    {"name", name},
                    {"file", file},
                    {"study", study},
                    {"runs", count},
                    {"shard_index", options.shard_index},
                    {"shard_count", options.shard_count},
                    {"replies", by_run}};
  ResultSet results(fs::path(options.results_dir) / name);
  const std::string out = shard_file_name(options.shard_index, options.shard_count);
  results.add(out, doc.dump(1) + "\n");
  results.commit();
  std::printf("# %s: shard %d of %d, %zu of %zu runs simulated; merge with moesys experiment --merge %s\n",
              name.c_str(), options.shard_index, options.shard_count, replies.size(), count,
              (fs::path(options.results_dir) / name).string().c_str());
}

/// The shard files named by `path`: the file itself, or a folder's shard-*-of-*.json files.
std::vector<std::string> shard_files(const std::string& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return {path};
  static const std::regex pattern(R"(shard-\d+-of-\d+\.json)");
  std::vector<std::string> out;
  for (const auto& entry : fs::directory_iterator(path, ec))
    if (entry.is_regular_file() && std::regex_match(entry.path().filename().string(), pattern))
      out.push_back(entry.path().string());
  std::sort(out.begin(), out.end());
  if (out.empty()) throw core::ConfigError(path, "(folder)", "expected shard files (shard-I-of-N.json), found none");
  return out;
}

int integer_at(const json& doc, const std::string& file, const char* key, long long lo, long long hi) {
  if (!doc.contains(key) || !doc[key].is_number_integer() || doc[key].get<long long>() < lo ||
      doc[key].get<long long>() > hi)
    throw core::ConfigError(file, key,
                            "expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                                "] (is this a shard file written by moesys experiment --shard?)");
  return static_cast<int>(doc[key].get<long long>());
}

}  // namespace

std::pair<int, int> parse_shard(const std::string& text) {
  static const std::regex pattern(R"((\d{1,5})/(\d{1,5}))");
  std::smatch m;
  if (std::regex_match(text, m, pattern)) {
    const int i = std::stoi(m[1]), n = std::stoi(m[2]);
    if (n >= 1 && n <= 10000 && i < n) return {i, n};
  }
  throw core::ConfigError("", "--shard", "expected I/N with 0 <= I < N <= 10000 (e.g. 0/4), got '" + text + "'");
}

bool run_study(const json& study, const std::string& file, const std::string& name, std::size_t count,
               const ExperimentOptions& options, const std::function<json(std::size_t)>& fn,
               const std::function<void(std::size_t, sim::IsolatedOutcome&&)>& done,
               const std::function<void(std::size_t)>& started) {
  if (options.merged) {
    for (std::size_t i = 0; i < count; ++i) done(i, sim::outcome_from_reply(options.merged->at(i)));
    return true;
  }
  if (options.shard_count <= 1) {
    sim::run_isolated_each(count, options.jobs, fn, done, started);
    return true;
  }
  std::vector<std::size_t> mine;
  for (std::size_t i = static_cast<std::size_t>(options.shard_index); i < count;
       i += static_cast<std::size_t>(options.shard_count))
    mine.push_back(i);
  std::map<std::size_t, json> replies;
  sim::run_isolated_each(
      mine.size(), options.jobs, [&](std::size_t k) { return fn(mine[k]); },
      [&](std::size_t k, sim::IsolatedOutcome&& o) {
        if (!options.quiet) std::fprintf(stderr, "[%zu/%zu] run %zu done\n", replies.size() + 1, mine.size(), mine[k]);
        replies[mine[k]] = std::move(o.reply);
      });
  write_shard(study, file, name, count, options, replies);
  return false;
}

int merge_shards(const std::vector<std::string>& paths, ExperimentOptions options) {
  if (paths.empty()) throw core::ConfigError("", "--merge", "expected shard files or folders to merge");
  std::vector<std::string> files;
  for (const std::string& p : paths)
    for (const std::string& f : shard_files(p)) files.push_back(f);
  json study;
  std::string first, origin;
  int count = 0;
  std::size_t runs = 0;
  std::set<int> seen;
  auto merged = std::make_shared<std::map<std::size_t, json>>();
  for (const std::string& f : files) {
    const json doc = core::read_json_file(f);
    if (!doc.is_object() || doc.value("moesys_shard", 0) != kShardFormat)
      throw core::ConfigError(f, "moesys_shard", "expected a shard file written by moesys experiment --shard");
    const int n = integer_at(doc, f, "shard_count", 1, 10000), i = integer_at(doc, f, "shard_index", 0, n - 1);
    const auto r = static_cast<std::size_t>(integer_at(doc, f, "runs", 0, kMaxStudyRuns));
    if (!doc.contains("study") || !doc["study"].is_object() || !doc.contains("replies") ||
        !doc["replies"].is_object() || !doc.contains("file") || !doc["file"].is_string())
      throw core::ConfigError(f, "study", "expected the study, its file and the runs' replies");
    if (first.empty()) {
      first = f, study = doc["study"], count = n, runs = r, origin = doc["file"].get<std::string>();
    } else if (doc["study"] != study || n != count || r != runs) {
      throw core::ConfigError(f, "study",
                              "is a shard of another study, or of a changed study file, than " + first +
                                  " (every shard must come from the same study file and --shard .../" +
                                  std::to_string(count) + ")");
    }
    if (!seen.insert(i).second)
      throw core::ConfigError(f, "shard_index", "shard " + std::to_string(i) + " given twice");
    for (const auto& [key, reply] : doc["replies"].items()) {
      std::size_t run = 0;
      try {
        run = static_cast<std::size_t>(std::stoul(key));
      } catch (const std::exception&) {
        throw core::ConfigError(f, "replies." + key, "expected a run index");
      }
      if (run >= runs || static_cast<int>(run % static_cast<std::size_t>(n)) != i)
        throw core::ConfigError(f, "replies." + key, "is not a run of shard " + std::to_string(i));
      (*merged)[run] = reply;
    }
  }
  for (int i = 0; i < count; ++i)
    if (!seen.count(i))
      throw core::ConfigError(paths.front(), "--merge",
                              "shard " + std::to_string(i) + " of " + std::to_string(count) + " is missing");
  if (merged->size() != runs)
    throw core::ConfigError(
        first, "replies",
        "the shards hold " + std::to_string(merged->size()) + " of the study's " + std::to_string(runs) + " runs");
  const std::string kind = study.value("kind", "");
  auto it = experiment_kinds().find(kind);
  if (it == experiment_kinds().end()) throw core::ConfigError(first, "study.kind", "unknown kind '" + kind + "'");
  options.merged = merged;
  options.shard_index = 0, options.shard_count = 1;
  return it->second(study, origin, options);
}

std::string resolve_study_path(const std::string& path, const std::string& study_file) {
  if (fs::path(path).is_absolute()) return path;
  for (const fs::path& base : {fs::path(study_file).parent_path(), fs::path(MOESYS_SOURCE_DIR)}) {
    std::error_code ignored;
    if (fs::exists(base / path, ignored)) return (base / path).string();
  }
  return path;
}

core::Calibration study_calibration(const nlohmann::json& study, const std::string& study_file,
                                    const core::ClusterSpec& cluster) {
  const core::Calibration base = core::default_calibration_for(core::gpu_family_of(cluster.node.gpu.model));
  if (!study.contains("calibration")) return base;
  if (!study["calibration"].is_string()) throw core::ConfigError(study_file, "calibration", "expected a file name");
  const std::string path = resolve_study_path(study["calibration"].get<std::string>(), study_file);
  return core::parse_calibration(core::read_json_file(path), path, base);
}

}  // namespace moesys::studies
