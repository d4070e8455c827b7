// moesys: one program, many subcommands. Exit codes: 0 success, 1 runtime failure, 2 bad input.
#include <cstdio>
#include <exception>
#include <string>

#include "cli/command.hpp"
#include "core/error.hpp"
#include "core/interrupts.hpp"

namespace moesys::cli {
std::map<std::string, Command>& commands() {
  static std::map<std::string, Command> registry;
  return registry;
}
}  // namespace moesys::cli

namespace {
void usage(FILE* out) {
  std::fprintf(out, "usage: moesys <command> [options]\n\ncommands:\n");
  for (const auto& [name, cmd] : moesys::cli::commands())
    std::fprintf(out, "  %-12s %s\n", name.c_str(), cmd.summary.c_str());
  std::fprintf(out, "\nRun 'moesys <command> --help' for a command's options.\n");
}
}  // namespace

int main(int argc, char** argv) {
  using namespace moesys;
  core::install_interrupt_handling();  // before any thread: SIGINT/SIGTERM stop children and remove temporary files
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  auto it = cli::commands().find(argv[1]);
  if (it == cli::commands().end()) {
    std::string known;
    for (const auto& [name, cmd] : cli::commands()) known += (known.empty() ? "" : ", ") + name;
    std::fprintf(stderr, "moesys: unknown command '%s' (known: %s)\n", argv[1], known.c_str());
    return 2;
  }
  try {
    return it->second.run(argc - 1, argv + 1);
  } catch (const core::ConfigError& e) {
    std::fprintf(stderr, "moesys: error: %s\n", core::one_line(e.what()).c_str());
    return 2;
  } catch (const core::InfeasibleError& e) {
    // Valid fields that cannot run together: the message names the numbers that conflict, not one field.
    std::fprintf(stderr, "moesys: error: infeasible: %s\n", core::one_line(e.what()).c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moesys: failure: %s\n", core::one_line(e.what()).c_str());
    return 1;
  }
}
