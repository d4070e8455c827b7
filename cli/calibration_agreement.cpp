#include "cli/calibration_agreement.hpp"

#include <cmath>
#include <map>
#include <set>

namespace moesys::cli {

std::string configuration_key(const CalibrationPoint& p) {
  std::string key = p.category + "|" + p.gpu_preset + "|" + std::to_string(p.nodes) + "x" +
                    std::to_string(p.gpus_per_node) + "|" + std::to_string(p.nics_per_node) + "x" +
                    std::to_string(p.nic_gbps) + (p.efa ? "efa" : "") + "|" + p.algorithm + "|" +
                    std::to_string(static_cast<int>(p.harness)) + "|g" + std::to_string(p.gpus_per_thread) + "|" +
                    std::to_string(p.size_bytes) + "|" + std::to_string(p.m) + "x" + std::to_string(p.n) + "x" +
                    std::to_string(p.k) + "x" + std::to_string(p.groups) + "|" + p.dtype;
  const EpSetting& e = p.ep;
  if (p.category.rfind("ep_", 0) == 0)
    key += "|" + std::to_string(e.low_latency) + std::to_string(e.tokens) + "," + std::to_string(e.hidden) + "," +
           std::to_string(e.topk) + "," + std::to_string(e.topk_groups) + "," + std::to_string(e.experts) + "," +
           std::to_string(e.ranks) + "," + e.dispatch_dtype;
  return key;
}

namespace {
// The point's measured time relative to the model's: a time unit directly, a rate (bandwidth, FLOP/s) inverted.
double time_ratio(const CalibrationPoint& p) {
  return p.unit == "us" ? p.measured / p.model : p.model / p.measured;
}
}  // namespace

TableAgreement table_agreement(const std::vector<CalibrationPoint>& points) {
  std::map<std::string, std::vector<const CalibrationPoint*>> by_configuration;
  for (const auto& p : points)
    if (p.evaluated() && p.model > 0 && p.measured > 0) by_configuration[configuration_key(p)].push_back(&p);
  TableAgreement a;
  for (const auto& [key, group] : by_configuration) {
    std::set<std::string> sources;
    for (const auto* p : group) sources.insert(p->source);
    if (sources.size() < 2) continue;
    ++a.configurations;
    // The value that minimizes the squared log error (the fit's loss) is the geometric mean.
    double mean_log = 0;
    for (const auto* p : group) mean_log += std::log(time_ratio(*p));
    const double best = std::exp(mean_log / static_cast<double>(group.size()));
    for (const auto* p : group) {
      const double t = time_ratio(*p);
      a.errors.push_back(std::fabs(p->unit == "us" ? best / t - 1 : t / best - 1));
      a.model_errors.push_back(std::fabs(p->error()));
    }
  }
  return a;
}

}  // namespace moesys::cli
