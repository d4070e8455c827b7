#pragma once
// `moesys experiment FILE` reads a study {"kind": "<kind>", ...} and hands it to the runner registered for
// that kind (training studies, inference studies, ...). The runners live in studies/; cli/ parses and prints.
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace moesys::studies {

/// The most runs one study may describe: each run is a simulation of seconds to minutes, so more is a mistake
/// (10^8 runs from a 1.7 KB grid) rather than a plan, and is refused before anything runs.
constexpr int kMaxStudyRuns = 10000;

struct ExperimentOptions {
  std::string results_dir = "results";   // the runner writes results/<experiment name>/...
  bool plots = true;                     // run the matplotlib scripts after the study
  bool quiet = false;                    // no progress lines
  int jobs = 1;                          // simulations run at once (-j), each in its own process
  int shard_index = 0, shard_count = 1;  // --shard I/N: run only the runs i with i % N == I (study_runs.hpp)
  /// --merge: every run's outcome as its shard recorded it, by run index (nothing is simulated).
  std::shared_ptr<const std::map<std::size_t, nlohmann::json>> merged;
};

using ExperimentRunner =
    std::function<int(const nlohmann::json& study, const std::string& file, const ExperimentOptions& options)>;

std::map<std::string, ExperimentRunner>& experiment_kinds();

struct ExperimentKindRegistrar {
  ExperimentKindRegistrar(const std::string& kind, ExperimentRunner run) { experiment_kinds()[kind] = std::move(run); }
};

}  // namespace moesys::studies
