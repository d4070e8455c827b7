#pragma once
// How a study's runs are carried out: all of them here, up to -j at once (the default); one deterministic share
// (--shard I/N: the runs i with i % N == I), recorded in results/<name>/shard-I-of-N.json; or none, when --merge
// hands the study the outcomes its shards recorded. A study's result files are made from the runs' outcomes
// alone, in the study's order, so merged shards give byte for byte the files of one unsharded run.
#include <cstddef>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/calibration.hpp"
#include "core/cluster.hpp"
#include "sim/isolated_run.hpp"
#include "studies/experiment_kinds.hpp"

namespace moesys::studies {

/// Runs, or replays, the `count` runs of `study` (results/<name>/) as `options` says; `done(i, outcome)` as each
/// ends. Returns false for a shard: its file is written and the caller writes nothing else.
bool run_study(const nlohmann::json& study, const std::string& file, const std::string& name, std::size_t count,
               const ExperimentOptions& options, const std::function<nlohmann::json(std::size_t)>& fn,
               const std::function<void(std::size_t, sim::IsolatedOutcome&&)>& done,
               const std::function<void(std::size_t)>& started);

/// `moesys experiment --merge PATH...`: reads the shard files (PATH a file, or a folder whose shard-*-of-*.json
/// files are read), checks that they are every shard of one study exactly once, and writes that study's result
/// files from their outcomes. ConfigError (exit 2, nothing written) on shards of different or changed studies, a
/// missing or repeated shard, or a file that is not a shard.
int merge_shards(const std::vector<std::string>& paths, ExperimentOptions options);

/// "I/N" -> (I, N); ConfigError at --shard unless 0 <= I < N <= 10000.
std::pair<int, int> parse_shard(const std::string& text);

/// A study file names other files (clusters, calibration, routing traces) relative to itself first, then to the
/// source tree (so experiments run from anywhere), then to the working directory.
std::string resolve_study_path(const std::string& path, const std::string& study_file);

/// The parameters a study's runs on `cluster` simulate with: the GPU family's table, with the study's optional
/// "calibration" file (a path, resolved as above) over it. Bad input is a ConfigError at "calibration".
core::Calibration study_calibration(const nlohmann::json& study, const std::string& study_file,
                                    const core::ClusterSpec& cluster);

}  // namespace moesys::studies
