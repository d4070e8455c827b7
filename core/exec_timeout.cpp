#include "core/exec_timeout.hpp"

#include <cmath>
#include <cstdlib>
#include <string>

#include "core/error.hpp"

namespace moesys::core {

double exec_timeout_s() {
  const char* env = std::getenv("MOESYS_EXEC_TIMEOUT_S");
  if (!env) return kDefaultExecTimeoutS;
  const std::string text = env;
  char* end = nullptr;
  const double s = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(s) || !(s > 0) || s > kMaxExecTimeoutS)
    throw ConfigError("", "MOESYS_EXEC_TIMEOUT_S",
                      "expected a number of seconds in (0, 86400], got '" + text + "' (the environment variable)");
  return s;
}

}  // namespace moesys::core
