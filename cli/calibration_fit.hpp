#pragma once
// Fits a family's calibration parameters to its published points.
#include <string>
#include <vector>

#include "cli/calibration_points.hpp"

namespace moesys::cli {

/// The fit's main term over the evaluated points' log(model / measured): its mean square (the tables' loss), or its
/// mean absolute value (robust: a point the model misses by a mechanism it lacks pulls by its sign only, so it
/// cannot drag a parameter that many other points determine; the median's loss where the square is the mean's).
enum class FitLoss { squared, absolute };
/// "squared" or "abs"; anything else throws core::ConfigError naming `--loss`.
FitLoss parse_fit_loss(const std::string& name);

/// The parameters the points constrain (those whose change moves some point), refitted by coordinate descent on
/// `loss` over the evaluated points plus a hinge on errors past 13.5%, from `start`. Parameters no point moves keep
/// their value.
/// `first_step`: the largest factor tried (smaller when starting near the optimum, as cross-validation does).
/// `free`: fit only these parameters, holding the others at `start` (a new category of points refits what it
/// brings without moving the rest of a table); empty: every parameter the points move. An unknown name throws
/// core::ConfigError on `--free`.
core::Calibration fit_calibration(const std::vector<CalibrationPoint>& points, const core::Calibration& start,
                                  bool progress, double first_step = 1.5, const std::vector<std::string>& free = {},
                                  FitLoss loss = FitLoss::squared);
/// The mean `loss` of log(model / measured) over the evaluated points.
double fit_loss(const std::vector<CalibrationPoint>& points, FitLoss loss = FitLoss::squared);

}  // namespace moesys::cli
