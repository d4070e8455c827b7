// `moesys tune FILE`: searches a declared space of training settings in simulation; the driver is
// studies/tune_study.hpp, the search studies/tune_search.hpp. This file parses the flags.
#include <cstdio>

#include "cli/args.hpp"
#include "cli/command.hpp"
#include "core/error.hpp"
#include "core/json_input.hpp"
#include "core/output_files.hpp"
#include "studies/study_runs.hpp"
#include "studies/tune_study.hpp"

namespace moesys::cli {
namespace {

int run_tune(int argc, char** argv) {
  Args args(argc, argv, 1, {"--results", "-j", "--strategy", "--shard"}, {"--merge", "--quiet", "--help"});
  if (args.has("--help")) {
    std::printf(
        "usage: moesys tune FILE [--strategy descent|grid] [--results DIR] [-j JOBS] [--shard I/N] [--quiet]\n"
        "       moesys tune --merge PATH... [--results DIR] [--quiet]\n"
        "FILE: {\"name\": ..., \"base\": {training config}, \"space\": {\"policy.overlap_chunks\": [1, 2, 4], ...},\n"
        "       \"strategy\": \"descent\",\n"
        "       \"compare\": [\"deepspeed\", {\"preset\": \"moesys\", \"gate\": \"dropless\"}]}\n"
        "  --strategy   descent (coordinate descent from the first values, the default) or grid (every point)\n"
        "  -j JOBS      simulations at once, each in its own process (default 1)\n"
        "  --shard I/N  grid only: simulate the runs i with i %% N == I (the references, then the grid's points) and\n"
        "               write results/<name>/shard-I-of-N.json\n"
        "  --merge      write the search's result files from all its shard files (files, or folders holding them)\n");
    return 0;
  }
  studies::ExperimentOptions options;
  options.results_dir = args.get_or("--results", options.results_dir);
  core::check_output_dir(options.results_dir, "--results");
  options.quiet = args.has("--quiet");
  options.plots = false;
  options.jobs = args.get_int("-j", 1);
  if (options.jobs < 1 || options.jobs > 256) throw core::ConfigError("", "-j", "expected 1..256 simulations at once");
  if (args.has("--merge")) {
    if (args.has("--shard")) throw core::ConfigError("", "--shard", "a merge runs nothing: give --shard or --merge");
    if (args.has("--strategy")) throw core::ConfigError("", "--strategy", "a merge runs the strategy its shards ran");
    return studies::merge_shards(args.positional(), options);
  }
  if (auto shard = args.get("--shard"))
    std::tie(options.shard_index, options.shard_count) = studies::parse_shard(*shard);
  if (args.positional().size() != 1)
    throw core::ConfigError("", "FILE",
                            "expected exactly one search file, got " + std::to_string(args.positional().size()));
  const std::string file = args.positional().front();
  return studies::run_tune_study(core::read_json_file(file), file, options, args.get_or("--strategy", ""));
}

const CommandRegistrar kRegistrar("tune", "search policy settings and parallel layouts in simulation (JSON space)",
                                  run_tune);

}  // namespace
}  // namespace moesys::cli
