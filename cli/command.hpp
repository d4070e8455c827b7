#pragma once
// Subcommands register themselves by name; main() dispatches on argv[1] and maps exceptions to exit codes.
#include <functional>
#include <map>
#include <string>

namespace moesys::cli {

struct Command {
  std::string summary;
  std::function<int(int argc, char** argv)> run;  // argv[0] is the subcommand name
};

std::map<std::string, Command>& commands();

struct CommandRegistrar {
  CommandRegistrar(const std::string& name, const std::string& summary, std::function<int(int, char**)> run) {
    commands()[name] = Command{summary, std::move(run)};
  }
};

}  // namespace moesys::cli
