#pragma once
// The "training" experiment kind (`moesys experiment FILE` with {"kind": "training", ...}) and the helpers that
// `moesys train` shares with it. A study:
//   {"kind": "training", "name": "paper-training", "description": "...",
//    "base": <training config, policies/training/training_config.hpp>,
//    "grid": [[<patch>, ...], [<patch>, ...]],   // every combination of one patch per axis, merged into base
//    "runs": [<patch>, ...],                     // and/or an explicit list
//    "baseline": "deepspeed" | ["a", "b"]}      // variant(s) ratios are taken against (optional)
// A patch is a JSON merge patch of the config that may carry "case" and "variant" labels (removed before
// merging). A run's case joins its patches' cases and its variant joins their variants; ratios.csv compares
// every run with the baseline of its case (the first listed baseline variant that the case has).
// Writes <results>/<name>/runs.csv, runs.json, ratios.csv (with a baseline) and PNG plots.
#include <nlohmann/json.hpp>
#include <string>

#include "studies/experiment_kinds.hpp"

namespace moesys::studies {

namespace training_cli {

int run_training_study(const nlohmann::json& study, const std::string& file, const ExperimentOptions& options);

}  // namespace training_cli

}  // namespace moesys::studies
