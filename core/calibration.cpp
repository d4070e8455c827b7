#include "core/calibration.hpp"

#include <cctype>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/json_reader.hpp"

namespace moesys::core {

double ramp_efficiency(double half_bytes, double bytes) {
  return bytes > 0 ? 1.0 / (1.0 + std::sqrt(half_bytes / bytes)) : 1.0;
}

double Calibration::message_efficiency(double bytes, bool network, bool point_to_point) const {
  const double half = network                                             ? nic_half_bandwidth_bytes
                      : point_to_point && p2p_half_bandwidth_bytes > 0 ? p2p_half_bandwidth_bytes
                                                                        : half_bandwidth_bytes;
  return ramp_efficiency(half, bytes);
}

Calibration default_calibration() {
  return Calibration{};
}

Calibration for_network(Calibration cal, bool efa) {
  if (efa) {
    cal.net_step_latency_s = cal.efa_step_latency_s;
    cal.nic_half_bandwidth_bytes = cal.efa_half_bandwidth_bytes;
    cal.nic_efficiency = cal.efa_efficiency;
  }
  return cal;
}

const std::vector<std::string>& gpu_families() {
  static const std::vector<std::string> kFamilies = {"a100", "h100", "h200"};
  return kFamilies;
}

std::string gpu_family_of(const std::string& gpu_model) {
  std::string m;
  for (char ch : gpu_model) m += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (m.find("a100") != std::string::npos) return "a100";
  if (m.find("h100") != std::string::npos || m.find("h800") != std::string::npos) return "h100";
  if (m.find("h200") != std::string::npos) return "h200";
  return "";
}

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
      {"pcie_duplex_efficiency", {&Calibration::pcie_duplex_efficiency, true}},
      {"ce_nvlink_efficiency", {&Calibration::ce_nvlink_efficiency, true}},
      {"nic_efficiency", {&Calibration::nic_efficiency, true}},
      {"gemm_efficiency", {&Calibration::gemm_efficiency, true}},
      {"gemm_fp8_efficiency", {&Calibration::gemm_fp8_efficiency, true}},
      {"gemm_tile_overhead_k", {&Calibration::gemm_tile_overhead_k, false, 1e6}},
      {"tree_efficiency", {&Calibration::tree_efficiency, true}},
      {"p2p_efficiency", {&Calibration::p2p_efficiency, true}},
      {"framework_call_latency_s", {&Calibration::framework_call_latency_s, false, 1.0}},
      {"host_launch_s", {&Calibration::host_launch_s, false, 1.0}},
      {"host_p2p_op_s", {&Calibration::host_p2p_op_s, false, 1.0}},
      // At most half: SimGrid shares a GPU fairly between a kernel and the communication load, so a larger share
      // would not be held against a running GEMM.
      {"comm_sm_share", {&Calibration::comm_sm_share, false, 0.5}},
      {"comm_kernel_sms", {&Calibration::comm_kernel_sms, false, 1e4}},
      {"comm_waits_behind_kernels", {&Calibration::comm_waits_behind_kernels, false, 1.0}},
      {"comm_hbm_traffic", {&Calibration::comm_hbm_traffic, false, 10.0}},
      {"ce_hbm_traffic", {&Calibration::ce_hbm_traffic, false, 10.0}},
      {"hbm_efficiency", {&Calibration::hbm_efficiency, true}},
      {"step_latency_s", {&Calibration::step_latency_s, false, 1.0}},
      {"ll128_step_latency_s", {&Calibration::ll128_step_latency_s, false, 1.0}},
      {"ll_step_latency_s", {&Calibration::ll_step_latency_s, false, 1.0}},
      {"net_step_latency_s", {&Calibration::net_step_latency_s, false, 1.0}},
      {"nvls_efficiency", {&Calibration::nvls_efficiency, true}},
      {"nvls_latency_s", {&Calibration::nvls_latency_s, false, 1.0}},
      {"alltoall_net_peer_latency_s", {&Calibration::alltoall_net_peer_latency_s, false, 1.0}},
      {"ep_ll_latency_s", {&Calibration::ep_ll_latency_s, false, 1.0}},
      {"ep_nvlink_efficiency", {&Calibration::ep_nvlink_efficiency, true}},
      {"half_bandwidth_bytes", {&Calibration::half_bandwidth_bytes, false, 1e12}},
      {"p2p_half_bandwidth_bytes", {&Calibration::p2p_half_bandwidth_bytes, false, 1e12}},
      {"p2p_channel_bytes_per_s", {&Calibration::p2p_channel_bytes_per_s, false, 1e13}},
      {"tree_half_bandwidth_bytes", {&Calibration::tree_half_bandwidth_bytes, false, 1e12}},
      {"nic_half_bandwidth_bytes", {&Calibration::nic_half_bandwidth_bytes, false, 1e12}},
      {"efa_step_latency_s", {&Calibration::efa_step_latency_s, false, 1.0}},
      {"efa_half_bandwidth_bytes", {&Calibration::efa_half_bandwidth_bytes, false, 1e12}},
      {"efa_efficiency", {&Calibration::efa_efficiency, true}},
      {"kernel_launch_s", {&Calibration::kernel_launch_s, false, 1.0}},
      {"copy_setup_s", {&Calibration::copy_setup_s, false, 1.0}},
      {"host_op_s", {&Calibration::host_op_s, false, 1.0}},
      {"stream_wake_s", {&Calibration::stream_wake_s, false, 1.0}},
      {"busy_compute_wake_s", {&Calibration::busy_compute_wake_s, false, 1.0}},
      {"slot_handoff_s", {&Calibration::slot_handoff_s, false, 1.0}},
      {"collective_latency_s", {&Calibration::collective_latency_s, false, 1.0}},
      {"progress_spin_s", {&Calibration::progress_spin_s, false, 1.0}},
      {"progress_core_share", {&Calibration::progress_core_share, false, 1.0}},
  };
  return kFields;
}
}  // namespace

Calibration parse_calibration(const nlohmann::json& j, const std::string& file, const Calibration& base) {
  if (!j.is_object()) throw ConfigError(file, "(root)", "expected an object of calibration parameters");
  Calibration c = base;
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
    // Below a half, both directions together would carry less than one alone.
    if (it->second.member == &Calibration::pcie_duplex_efficiency && v < 0.5)
      throw ConfigError(file, key, "expected a duplex efficiency in [0.5, 1], got " + value.dump());
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
