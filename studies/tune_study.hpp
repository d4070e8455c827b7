#pragma once
// The driver of `moesys tune FILE`: validates the search file, simulates the reference policies and the points the
// strategy asks for (studies/tune_search.hpp), prints the best configuration, its gain over the references and the
// throughput-memory Pareto front, and writes results/<name>/: tune.json (every simulated point), points.csv and
// best.json (a config `moesys train --config` runs on any runtime).
//
// A grid search is a study like the others (study_runs.hpp): its runs are the references, then every grid point,
// in that order, so `--shard I/N` simulates a deterministic share and writes results/<name>/shard-I-of-N.json, and
// `moesys tune --merge` (or `moesys experiment --merge`) writes exactly the files of the unsharded search. The
// shard records the search file as a study of kind "tune" with its strategy. A descent picks each sweep from the
// one before, so it runs on one machine (-j only).
#include <nlohmann/json.hpp>
#include <string>

#include "studies/experiment_kinds.hpp"

namespace moesys::studies {

/// Runs the search of `spec` (read from `file`) with `strategy` ("descent" or "grid"; empty: the file's
/// "strategy", else descent). Bad input is a ConfigError before anything runs; returns the exit code.
int run_tune_study(const nlohmann::json& spec, const std::string& file, const ExperimentOptions& options,
                   const std::string& strategy);

}  // namespace moesys::studies
