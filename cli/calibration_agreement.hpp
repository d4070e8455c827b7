#pragma once
// How far apart published tables are where they measured the same thing: points of different sources with the
// same configuration (GPU, nodes, GPUs and NICs per node, operation, size, harness) should have one value, and the
// best single value per configuration (their geometric mean, in time) still misses each table by what the tables
// disagree. That is an error no model can go below on these points, and the yardstick for the model's own.
#include <string>
#include <vector>

#include "cli/calibration_points.hpp"

namespace moesys::cli {

struct TableAgreement {
  int configurations = 0;      // configurations measured by two or more sources
  std::vector<double> errors;        // |error| of the best single value, one per evaluated point of those
  std::vector<double> model_errors;  // the model's |error| on the same points
};

/// Everything that decides what a point measured; points with equal keys measured the same call on the same machine.
std::string configuration_key(const CalibrationPoint& p);

/// The agreement of the evaluated points of `points`, from the measured values relative to the model's (so that
/// a time and a bus bandwidth of the same configuration compare: the model converts both the same way).
TableAgreement table_agreement(const std::vector<CalibrationPoint>& points);

}  // namespace moesys::cli
