#include "core/calibration.hpp"

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/json_reader.hpp"

namespace moesys::core {

double Calibration::message_efficiency(double bytes) const {
  if (bytes <= 0) return 1.0;
  return 1.0 / (1.0 + std::sqrt(half_bandwidth_bytes / bytes));
}

Calibration default_calibration() { return Calibration{}; }

namespace {
// Every field with its JSON key and its sane range. Efficiencies lie in [0.001, 1]: a smaller one would make one
// step take longer than any study can simulate (5e-324 reaches SimGrid as an infinite duration). Latencies are at
// most a second and the half-bandwidth size at most 1 TB, orders of magnitude beyond any real interconnect.
struct Field {
  double Calibration::*member;
  bool is_efficiency;
  double max = 1;
};
constexpr double kMinEfficiency = 1e-3;
const std::map<std::string, Field>& fields() {
  static const std::map<std::string, Field> kFields = {
      {"nvlink_efficiency", {&Calibration::nvlink_efficiency, true}},
      {"pcie_efficiency", {&Calibration::pcie_efficiency, true}},
      {"nic_efficiency", {&Calibration::nic_efficiency, true}},
      {"gemm_efficiency", {&Calibration::gemm_efficiency, true}},
      {"hbm_efficiency", {&Calibration::hbm_efficiency, true}},
      {"step_latency_s", {&Calibration::step_latency_s, false, 1.0}},
      {"half_bandwidth_bytes", {&Calibration::half_bandwidth_bytes, false, 1e12}},
      {"kernel_launch_s", {&Calibration::kernel_launch_s, false, 1.0}},
      {"stream_wake_s", {&Calibration::stream_wake_s, false, 1.0}},
      {"busy_compute_wake_s", {&Calibration::busy_compute_wake_s, false, 1.0}},
      {"collective_latency_s", {&Calibration::collective_latency_s, false, 1.0}},
      {"progress_spin_s", {&Calibration::progress_spin_s, false, 1.0}},
      {"progress_core_share", {&Calibration::progress_core_share, false, 1.0}},
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
    if (it->second.is_efficiency && !(v >= kMinEfficiency && v <= 1))
      throw ConfigError(file, key, "expected an efficiency in [0.001, 1], got " + value.dump());
    if (!it->second.is_efficiency && !(v >= 0 && v <= it->second.max))
      throw ConfigError(file, key, "expected a number in [0, " + shown(it->second.max) + "], got " + value.dump());
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
