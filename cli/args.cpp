#include "cli/args.hpp"

#include <cmath>
#include <stdexcept>

#include "core/error.hpp"

namespace moesys::cli {

Args::Args(int argc, char** argv, int first, const std::set<std::string>& valued,
           const std::set<std::string>& switches) {
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("-", 0) != 0 || a == "-") {
      positional_.push_back(a);
      continue;
    }
    std::string value;
    bool inline_value = false;
    if (auto eq = a.find('='); eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
      inline_value = true;
    }
    if (switches.count(a)) {
      if (inline_value) throw core::ConfigError("", a, "takes no value");
      switches_.insert(a);
    } else if (valued.count(a)) {
      if (!inline_value) {
        if (i + 1 >= argc) throw core::ConfigError("", a, "expected a value after the flag");
        value = argv[++i];
      }
      values_[a] = value;
    } else {
      std::string known;
      for (const auto& k : valued) known += (known.empty() ? "" : ", ") + k;
      for (const auto& k : switches) known += (known.empty() ? "" : ", ") + k;
      throw core::ConfigError("", a, "unknown option (known: " + known + ")");
    }
  }
}

std::optional<std::string> Args::get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string Args::get_or(const std::string& name, const std::string& fallback) const {
  return get(name).value_or(fallback);
}

int Args::get_int(const std::string& name, int fallback) const {
  auto v = get(name);
  if (!v) return fallback;
  try {
    std::size_t used = 0;
    int x = std::stoi(*v, &used);
    if (used != v->size()) throw std::invalid_argument(*v);
    return x;
  } catch (const std::exception&) {
    throw core::ConfigError("", name, "expected an integer, got '" + *v + "'");
  }
}

double Args::get_double(const std::string& name, double fallback) const {
  auto v = get(name);
  if (!v) return fallback;
  try {
    std::size_t used = 0;
    double x = std::stod(*v, &used);
    if (used != v->size() || !std::isfinite(x)) throw std::invalid_argument(*v);
    return x;
  } catch (const std::exception&) {
    throw core::ConfigError("", name, "expected a number, got '" + *v + "'");
  }
}

double parse_size(const std::string& flag, const std::string& text) {
  if (text.empty()) throw core::ConfigError("", flag, "expected a size such as 8, 64K, 1M or 1G");
  double mult = 1;
  std::string digits = text;
  switch (text.back()) {
    case 'K':
    case 'k':
      mult = 1024.0;
      digits.pop_back();
      break;
    case 'M':
    case 'm':
      mult = 1024.0 * 1024;
      digits.pop_back();
      break;
    case 'G':
    case 'g':
      mult = 1024.0 * 1024 * 1024;
      digits.pop_back();
      break;
    case 'T':
    case 't':
      mult = 1024.0 * 1024 * 1024 * 1024;
      digits.pop_back();
      break;
    default:
      break;
  }
  try {
    std::size_t used = 0;
    double x = std::stod(digits, &used);
    if (used != digits.size() || !(x > 0) || !std::isfinite(x)) throw std::invalid_argument(text);
    x *= mult;
    if (x < 1 || x > kMaxSizeBytes) throw std::out_of_range(text);
    return x;
  } catch (const std::out_of_range&) {
    throw core::ConfigError("", flag, "expected a size from 1 byte to 1P (2^50 bytes), got '" + text + "'");
  } catch (const std::exception&) {
    throw core::ConfigError("", flag, "expected a positive size such as 8, 64K, 1M or 1G, got '" + text + "'");
  }
}

double Args::get_size(const std::string& name, double fallback) const {
  auto v = get(name);
  return v ? parse_size(name, *v) : fallback;
}

}  // namespace moesys::cli
