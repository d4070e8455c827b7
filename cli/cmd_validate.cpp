// `moesys validate`: the training program of policy presets, run for real on CPU ranks of this machine and
// predicted by the simulator on a description of this machine measured in the same window; per preset the step
// time and its breakdown, predicted vs measured, and for two presets the predicted and measured speed-up
// (studies of the comparison: cli/validate_policies.cpp).
#include <cstdio>

#include "cli/args.hpp"
#include "cli/command.hpp"
#include "cli/validate_policies.hpp"
#include "core/error.hpp"
#include "core/exec_timeout.hpp"
#include "core/output_files.hpp"

namespace moesys::cli {
namespace {

int run_validate(int argc, char** argv) {
  Args args(argc, argv, 1,
            {"--ranks", "--steps", "--warmup", "--json", "--preset", "--policy", "--compare", "--model", "--repeats",
             "--detail", "--trace"},
            {"--help"});
  if (args.has("--help")) {
    std::printf(
        "usage: moesys validate [--compare deepspeed,moesys | --preset NAME | --policy JSON] [--ranks 4]\n"
        "                       [--model JSON] [--steps 4] [--warmup 2] [--repeats 3] [--json FILE]\n"
        "                       [--detail N] [--trace DIR]\n"
        "Runs the training program of the presets for real on MPI ranks of this machine (mpirun above one rank)\n"
        "and in simulation on a description of this machine that the same run measured first; prints predicted vs\n"
        "measured step time and breakdown per preset and, last, the predicted and measured speed-up.\n"
        "--detail N adds, per preset, the N operations whose predicted busy time is furthest from the measured.\n"
        "--trace DIR writes, per preset, the last repeat's measured and predicted spans as Chrome traces\n"
        "(DIR/NAME-measured.json, DIR/NAME-predicted.json; the real ranks' clocks may be a few ms apart).\n"
        "Default: --compare deepspeed,moesys on a GPT-MoE of 2 layers, hidden 256, 2 experts per rank.\n");
    return 0;
  }
  if (!args.positional().empty()) throw core::ConfigError("", args.positional().front(), "unexpected argument");
  if (auto json = args.get("--json")) core::check_output_file(*json, "--json");
  core::exec_timeout_s();  // a bad MOESYS_EXEC_TIMEOUT_S is refused before the machine probe starts any rank
#ifdef MOESYS_HAVE_EXEC
  return validate_policies(args);
#else
  throw core::RuntimeFailure("this moesys was built without the real runtimes (exec/ needs MPI and OpenBLAS)");
#endif
}

const CommandRegistrar kRegistrar("validate", "run policy presets for real and in simulation, compare step times",
                                  run_validate);

}  // namespace
}  // namespace moesys::cli
