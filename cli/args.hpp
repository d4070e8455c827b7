#pragma once
// A small command-line parser: `--name value` options, `--flag` switches and positional arguments.
// Errors are core::ConfigError with the flag as the "path", so they print as one line and exit 2.
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace moesys::cli {

class Args {
 public:
  /// `valued` lists the options that take a value, `switches` those that do not; anything else is an error.
  Args(int argc, char** argv, int first, const std::set<std::string>& valued, const std::set<std::string>& switches);

  bool has(const std::string& name) const { return values_.count(name) || switches_.count(name); }
  std::optional<std::string> get(const std::string& name) const;
  std::string get_or(const std::string& name, const std::string& fallback) const;
  int get_int(const std::string& name, int fallback) const;
  double get_double(const std::string& name, double fallback) const;
  /// Sizes such as 8, 64K, 1M, 1G (binary multiples, as nccl-tests reads them).
  double get_size(const std::string& name, double fallback) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::string> values_;
  std::set<std::string> switches_;
  std::vector<std::string> positional_;
};

/// The largest size a flag accepts: 2^50 bytes (1 PiB), beyond any buffer a GPU holds.
constexpr double kMaxSizeBytes = 1125899906842624.0;
/// A size in bytes from 1 to kMaxSizeBytes, with an optional K/M/G/T suffix (binary multiples).
double parse_size(const std::string& flag, const std::string& text);

}  // namespace moesys::cli
