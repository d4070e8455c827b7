#pragma once
// Strict reading of one JSON object of a config file: each key read at most once, typed and range-checked,
// and any key nobody asked about rejected. Every failure is a ConfigError naming the file, the JSON path of
// the key and what was expected, so a bad config always reads as one line.
#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.hpp"

namespace moesys::core {

/// Short rendering of a JSON value for error messages.
std::string shown(const nlohmann::json& v);

class JsonObjectReader {
public:
  /// `path` is the JSON path of the object itself ("" for the root, "model", "tasks[2]", ...).
  JsonObjectReader(const nlohmann::json& j, std::string file, std::string path);

  /// JSON path of a key of this object.
  std::string path(const std::string& key) const;
  const std::string& file() const { return file_; }

  /// The value of `key`, or nullptr when absent and not required (a required absent key fails).
  const nlohmann::json* find(const std::string& key, bool required);

  std::int64_t integer(const std::string& key, std::int64_t min,
                       std::int64_t max = std::numeric_limits<std::int64_t>::max(),
                       std::optional<std::int64_t> fallback = {});
  /// An int in [1, 2^31).
  int positive_int(const std::string& key, std::optional<int> fallback = {});
  double number(const std::string& key, double min, double max, std::optional<double> fallback = {});
  /// A finite number > 0.
  double positive_number(const std::string& key, std::optional<double> fallback = {});
  /// A non-empty string.
  std::string string(const std::string& key, std::optional<std::string> fallback = {});
  bool boolean(const std::string& key, std::optional<bool> fallback = {});
  /// One of `choices` (a string), reported with the list when it is not.
  std::string choice(const std::string& key, const std::vector<std::string>& choices,
                     std::optional<std::string> fallback = {});
  /// A non-empty array (an empty array stands in when absent and not required).
  const nlohmann::json& array(const std::string& key, bool required);

  /// Fails on the first key that no call above asked about, listing the valid ones.
  void reject_unknown() const;
  [[noreturn]] void fail(const std::string& key, const std::string& message) const;

private:
  const nlohmann::json& j_;
  std::string file_, path_;
  std::set<std::string> known_;
};

}  // namespace moesys::core
