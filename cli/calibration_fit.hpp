#pragma once
// Fits a family's calibration parameters to its published points.
#include <vector>

#include "cli/calibration_points.hpp"

namespace moesys::cli {

/// The parameters the points constrain (those whose change moves some point), refitted by coordinate descent on
/// the mean squared log error of the evaluated points, from `start`. Parameters no point moves keep their value.
/// `first_step`: the largest factor tried (smaller when starting near the optimum, as cross-validation does).
/// `free`: fit only these parameters, holding the others at `start` (a new category of points refits what it
/// brings without moving the rest of a table); empty: every parameter the points move. An unknown name throws
/// core::ConfigError on `--free`.
core::Calibration fit_calibration(const std::vector<CalibrationPoint>& points, const core::Calibration& start,
                                  bool progress, double first_step = 1.5, const std::vector<std::string>& free = {});
/// Mean squared log(model / measured) of the evaluated points.
double fit_loss(const std::vector<CalibrationPoint>& points);

}  // namespace moesys::cli
