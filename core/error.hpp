#pragma once
// Error types shared by every layer. The library throws; only cli/ turns errors into exit codes
// (ConfigError -> 2, everything else -> 1).
#include <stdexcept>
#include <string>

namespace moesys::core {

/// Bad input: a config file, a JSON path inside it, and what was expected there.
/// what() is the one line the user sees: "<file>: <json path>: <message>".
class ConfigError : public std::runtime_error {
public:
  ConfigError(std::string file, std::string json_path, std::string message)
      : std::runtime_error(format(file, json_path, message)), file_(std::move(file)),
        json_path_(std::move(json_path)), message_(std::move(message)) {}
  const std::string& file() const { return file_; }
  const std::string& json_path() const { return json_path_; }
  const std::string& message() const { return message_; }

private:
  static std::string format(const std::string& file, const std::string& path, const std::string& msg) {
    std::string out = file.empty() ? std::string("<flags>") : file;
    if (!path.empty()) out += ": " + path;
    return out + ": " + msg;
  }
  std::string file_;
  std::string json_path_;
  std::string message_;
};

/// A configuration that parses but cannot run (does not fit in memory, does not divide, ...).
/// Also exit code 2: it is the user's input that must change.
class InfeasibleError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// A failure while running (a collective that never completes, a dead rank, a CUDA error).
class RuntimeFailure : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

}  // namespace moesys::core
