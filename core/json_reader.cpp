#include "core/json_reader.hpp"

#include <cmath>
#include <sstream>

namespace moesys::core {

using nlohmann::json;

std::string shown(const json& v) {
  std::string s = v.dump();
  return s.size() > 40 ? s.substr(0, 37) + "..." : s;
}

namespace {
std::string num(double x) {
  std::ostringstream out;
  out << x;  // shortest form: 0, 1, 0.5
  return out.str();
}
}  // namespace

JsonObjectReader::JsonObjectReader(const json& j, std::string file, std::string path)
    : j_(j), file_(std::move(file)), path_(std::move(path)) {
  if (!j_.is_object()) fail("", "expected an object, got " + shown(j_));
}

std::string JsonObjectReader::path(const std::string& key) const {
  return key.empty() || path_.empty() ? path_ + key : path_ + "." + key;
}

const json* JsonObjectReader::find(const std::string& key, bool required) {
  known_.insert(key);
  auto it = j_.find(key);
  if (it != j_.end()) return &*it;
  if (required) fail(key, "missing required key");
  return nullptr;
}

std::int64_t JsonObjectReader::integer(const std::string& key, std::int64_t min, std::int64_t max,
                                       std::optional<std::int64_t> fallback) {
  const json* v = find(key, !fallback);
  if (!v) return *fallback;
  // Unsigned and signed storage are compared separately so that neither wraps around.
  const bool ok = v->is_number_integer() &&
                  (v->is_number_unsigned() ? v->get<std::uint64_t>() <= static_cast<std::uint64_t>(max)
                                           : v->get<std::int64_t>() <= max) &&
                  (v->is_number_unsigned() ? min <= 0 || v->get<std::uint64_t>() >= static_cast<std::uint64_t>(min)
                                           : v->get<std::int64_t>() >= min);
  if (!ok) {
    const std::string range = max == std::numeric_limits<std::int64_t>::max()
                                  ? ">= " + std::to_string(min)
                                  : "in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
    fail(key, "expected an integer " + range + ", got " + shown(*v));
  }
  return v->get<std::int64_t>();
}

int JsonObjectReader::positive_int(const std::string& key, std::optional<int> fallback) {
  const json* v = find(key, !fallback);
  if (!v) return *fallback;
  const bool positive = v->is_number_integer() &&
                        (v->is_number_unsigned() ? v->get<std::uint64_t>() > 0 : v->get<std::int64_t>() > 0);
  if (!positive) fail(key, "expected a positive integer, got " + shown(*v));
  if (v->get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<int>::max()))
    fail(key, "expected an integer below 2^31, got " + shown(*v));
  return v->get<int>();
}

double JsonObjectReader::number(const std::string& key, double min, double max, std::optional<double> fallback) {
  const json* v = find(key, !fallback);
  if (!v) return *fallback;
  const double x = v->is_number() ? v->get<double>() : NAN;
  if (!(x >= min && x <= max)) fail(key, "expected a number in [" + num(min) + ", " + num(max) + "], got " + shown(*v));
  return x;
}

double JsonObjectReader::positive_number(const std::string& key, std::optional<double> fallback) {
  const json* v = find(key, !fallback);
  if (!v) return *fallback;
  const double x = v->is_number() ? v->get<double>() : NAN;
  if (!(x > 0) || !std::isfinite(x)) fail(key, "expected a positive number, got " + shown(*v));
  return x;
}

std::string JsonObjectReader::string(const std::string& key, std::optional<std::string> fallback) {
  const json* v = find(key, !fallback);
  if (!v) return *fallback;
  if (!v->is_string() || v->get<std::string>().empty()) fail(key, "expected a non-empty string, got " + shown(*v));
  return v->get<std::string>();
}

bool JsonObjectReader::boolean(const std::string& key, std::optional<bool> fallback) {
  const json* v = find(key, !fallback);
  if (!v) return *fallback;
  if (!v->is_boolean()) fail(key, "expected true or false, got " + shown(*v));
  return v->get<bool>();
}

std::string JsonObjectReader::choice(const std::string& key, const std::vector<std::string>& choices,
                                     std::optional<std::string> fallback) {
  const json* v = find(key, !fallback);
  if (!v) return *fallback;
  std::string list;
  for (const auto& c : choices) list += (list.empty() ? "" : ", ") + c;
  if (v->is_string())
    for (const auto& c : choices)
      if (v->get<std::string>() == c) return c;
  fail(key, "expected one of " + list + ", got " + shown(*v));
}

const json& JsonObjectReader::array(const std::string& key, bool required) {
  static const json kEmpty = json::array();
  const json* v = find(key, required);
  if (!v) return kEmpty;
  if (!v->is_array() || v->empty()) fail(key, "expected a non-empty array, got " + shown(*v));
  return *v;
}

void JsonObjectReader::reject_unknown() const {
  for (auto it = j_.begin(); it != j_.end(); ++it) {
    if (known_.count(it.key())) continue;
    std::string valid;
    for (const auto& k : known_) valid += (valid.empty() ? "" : ", ") + k;
    fail(it.key(), "unknown key (valid keys: " + valid + ")");
  }
}

void JsonObjectReader::fail(const std::string& key, const std::string& message) const {
  throw ConfigError(file_, path(key), message);
}

}  // namespace moesys::core
