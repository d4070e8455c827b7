#include "core/calibration.hpp"

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.hpp"

namespace moesys::core {

double Calibration::message_efficiency(double bytes) const {
  if (bytes <= 0) return 1.0;
  return 1.0 / (1.0 + std::sqrt(half_bandwidth_bytes / bytes));
}

Calibration default_calibration() { return Calibration{}; }

namespace {
// Every field with its JSON key; efficiencies must lie in (0, 1], the others must be >= 0.
struct Field {
  double Calibration::*member;
  bool is_efficiency;
};
const std::map<std::string, Field>& fields() {
  static const std::map<std::string, Field> kFields = {
      {"nvlink_efficiency", {&Calibration::nvlink_efficiency, true}},
      {"pcie_efficiency", {&Calibration::pcie_efficiency, true}},
      {"nic_efficiency", {&Calibration::nic_efficiency, true}},
      {"gemm_efficiency", {&Calibration::gemm_efficiency, true}},
      {"hbm_efficiency", {&Calibration::hbm_efficiency, true}},
      {"step_latency_s", {&Calibration::step_latency_s, false}},
      {"half_bandwidth_bytes", {&Calibration::half_bandwidth_bytes, false}},
      {"kernel_launch_s", {&Calibration::kernel_launch_s, false}},
      {"stream_wake_s", {&Calibration::stream_wake_s, false}},
  };
  return kFields;
}
}  // namespace

Calibration parse_calibration(const nlohmann::json& j, const std::string& file) {
  if (!j.is_object()) throw ConfigError(file, "(root)", "expected an object of calibration parameters");
  Calibration c = default_calibration();
  for (const auto& [key, value] : j.items()) {
    auto it = fields().find(key);
    if (it == fields().end()) {
      std::string known;
      for (const auto& [k, f] : fields()) known += (known.empty() ? "" : ", ") + k;
      throw ConfigError(file, key, "unknown calibration parameter (known: " + known + ")");
    }
    if (!value.is_number()) throw ConfigError(file, key, "expected a number, got " + value.dump());
    double v = value.get<double>();
    if (it->second.is_efficiency && !(v > 0 && v <= 1))
      throw ConfigError(file, key, "expected an efficiency in (0, 1], got " + value.dump());
    if (!it->second.is_efficiency && !(v >= 0))
      throw ConfigError(file, key, "expected a non-negative number, got " + value.dump());
    c.*(it->second.member) = v;
  }
  return c;
}

nlohmann::json calibration_to_json(const Calibration& c) {
  nlohmann::json j;
  for (const auto& [key, f] : fields()) j[key] = c.*(f.member);
  return j;
}

}  // namespace moesys::core
