#include "cli/calibration_fit.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "sim/isolated_run.hpp"

namespace moesys::cli {
namespace {

struct Score {
  double worst = 0, squares = 0;
  // The largest error first, in half-percent steps (the minimax optimum is flat: many tables share it), then the
  // sum of squared errors, so the fit does not trade typical accuracy for a fraction of a percent at the worst.
  bool operator<(const Score& o) const {
    const double a = std::ceil(worst * 200), b = std::ceil(o.worst * 200);
    if (a != b) return a < b;
    return squares < o.squares;
  }
};

Score score(const std::vector<CalibrationPoint>& points, const core::Calibration& cal) {
  auto errors = sim::run_isolated([&] {
    auto copy = points;
    evaluate_calibration_points(copy, cal);
    nlohmann::json e = nlohmann::json::array();
    for (const auto& p : copy) e.push_back(p.error());
    return e;
  });
  Score s;
  for (const auto& e : errors) {
    const double x = e.get<double>();
    s.worst = std::max(s.worst, std::fabs(x));
    s.squares += x * x;
  }
  return s;
}

}  // namespace

core::Calibration fit_calibration(const std::vector<CalibrationPoint>& points, const core::Calibration& start,
                                  bool progress) {
  struct Param {
    double core::Calibration::*member;
    bool efficiency;
  };
  // Parameters the points constrain; hbm_efficiency and kernel_launch_s have no published point here.
  const std::vector<Param> params = {{&core::Calibration::nvlink_efficiency, true},
                                     {&core::Calibration::nic_efficiency, true},
                                     {&core::Calibration::pcie_efficiency, true},
                                     {&core::Calibration::gemm_efficiency, true},
                                     {&core::Calibration::step_latency_s, false},
                                     {&core::Calibration::half_bandwidth_bytes, false}};
  core::Calibration best = start;
  Score best_score = score(points, best);
  for (double step = 1.2; step > 1.001; step = 1 + (step - 1) / 2) {
    bool improved = true;
    while (improved) {
      improved = false;
      for (const auto& p : params) {
        for (double f : {step, 1 / step}) {
          core::Calibration trial = best;
          trial.*(p.member) *= f;
          if (p.efficiency) trial.*(p.member) = std::min(1.0, trial.*(p.member));
          Score s = score(points, trial);
          if (s < best_score) {
            best = trial;
            best_score = s;
            improved = true;
          }
        }
      }
    }
    if (progress) std::fprintf(stderr, "[fit] step %.4f: worst error %.1f%%\n", step, 100 * best_score.worst);
  }
  return best;
}

}  // namespace moesys::cli
