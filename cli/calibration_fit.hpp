#pragma once
// Fits the efficiency table to the published points: coordinate descent on each parameter with shrinking
// multiplicative steps, minimising the largest relative error in half-percent steps, then the sum of squared errors. Every
// evaluation is one simulation in a forked child.
#include <vector>

#include "cli/calibration_points.hpp"

namespace moesys::cli {

core::Calibration fit_calibration(const std::vector<CalibrationPoint>& points, const core::Calibration& start,
                                  bool progress);

}  // namespace moesys::cli
