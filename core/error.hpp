#pragma once
// Error types shared by every layer. The library throws; only cli/ turns errors into exit codes
// (ConfigError -> 2, everything else -> 1).
#include <cstddef>
#include <stdexcept>
#include <string>

namespace moesys::core {

/// An error message as one line, whatever the input held: control characters (a key with a newline in it) are
/// written as \xNN, and a very long message (a huge key) is cut.
inline std::string one_line(const std::string& s) {
  constexpr std::size_t kMaxChars = 2000;
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (out.size() >= kMaxChars) return out + "...";
    if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += ch;
    }
  }
  return out;
}

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
    return one_line(out + ": " + msg);
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
