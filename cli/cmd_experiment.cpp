// `moesys experiment FILE`: runs a study described in JSON and writes results/<name>/ (CSV, JSON, plots).
#include <cstdio>

#include "cli/args.hpp"
#include "cli/command.hpp"
#include "core/error.hpp"
#include "core/json_input.hpp"
#include "core/output_files.hpp"
#include "studies/experiment_kinds.hpp"
#include "studies/study_runs.hpp"

namespace moesys::cli {
namespace {

using studies::experiment_kinds;
using studies::ExperimentOptions;

int run_experiment(int argc, char** argv) {
  Args args(argc, argv, 1, {"--results", "-j", "--shard"}, {"--merge", "--no-plots", "--quiet", "--help"});
  if (args.has("--help")) {
    std::printf(
        "usage: moesys experiment FILE [--results DIR] [-j JOBS] [--shard I/N] [--no-plots] [--quiet]\n"
        "       moesys experiment --merge PATH... [--results DIR] [--no-plots] [--quiet]\n"
        "  -j JOBS      simulations at once, each in its own process (default 1; the results do not depend on it)\n"
        "  --shard I/N  run only the runs i with i %% N == I and write results/<name>/shard-I-of-N.json\n"
        "  --merge      write the study's result files from all its shard files (files, or folders holding them)\n");
    return 0;
  }
  ExperimentOptions options;
  options.results_dir = args.get_or("--results", options.results_dir);
  core::check_output_dir(options.results_dir, "--results");
  options.plots = !args.has("--no-plots");
  options.quiet = args.has("--quiet");
  options.jobs = args.get_int("-j", 1);
  if (options.jobs < 1 || options.jobs > 256) throw core::ConfigError("", "-j", "expected 1..256 simulations at once");
  if (args.has("--merge")) {
    if (args.has("--shard")) throw core::ConfigError("", "--shard", "a merge runs nothing: give --shard or --merge");
    return studies::merge_shards(args.positional(), options);
  }
  if (auto shard = args.get("--shard"))
    std::tie(options.shard_index, options.shard_count) = studies::parse_shard(*shard);
  if (args.positional().size() != 1)
    throw core::ConfigError("", "FILE",
                            "expected exactly one study file (usage: moesys experiment FILE [--results DIR] "
                            "[--no-plots] [--quiet]), got " +
                                std::to_string(args.positional().size()));
  const std::string file = args.positional().front();
  const nlohmann::json study = core::read_json_file(file);
  if (study.is_object() && !study.contains("kind") && study.contains("space") && study.contains("base"))
    throw core::ConfigError(file, "kind", "expected a string naming the kind of study; this file is a search space "
                                          "(base, space): run it with `moesys tune " + file + "`");
  if (!study.is_object() || !study.contains("kind") || !study["kind"].is_string())
    throw core::ConfigError(file, "kind", "expected a string naming the kind of study");
  const std::string kind = study["kind"].get<std::string>();
  auto it = experiment_kinds().find(kind);
  if (it == experiment_kinds().end()) {
    std::string known;
    for (const auto& [k, r] : experiment_kinds()) known += (known.empty() ? "" : ", ") + k;
    throw core::ConfigError(file, "kind", "unknown kind '" + kind + "' (known: " + known + ")");
  }
  return it->second(study, file, options);
}

const CommandRegistrar kRegistrar("experiment", "run a study (JSON) and write results/<name>/ with plots",
                                  run_experiment);

}  // namespace
}  // namespace moesys::cli
