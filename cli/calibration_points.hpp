#pragma once
// Published measurements the hardware model is calibrated on (calibration/a100-measured.json), and the
// model's prediction of each, simulated on a 2 x 8 A100-80GB cluster (8 x 200 Gb/s HDR per node, like the
// machines measured).
#include <string>
#include <vector>

#include "core/calibration.hpp"

namespace moesys::cli {

struct CalibrationPoint {
  std::string id;
  std::string category;  // allreduce, alltoall, p2p_nvlink, pcie_h2d, gemm
  int nodes = 1;
  int gpus_per_node = 8;
  double size_bytes = 0;  // collectives and copies; for GEMMs the cube side M=N=K
  std::string metric;     // busbw, bandwidth, TFLOPS
  std::string unit;
  double measured = 0;
  double model = 0;
  double error() const { return (model - measured) / measured; }
};

/// Reads the points; malformed entries are ConfigErrors naming the JSON path.
std::vector<CalibrationPoint> load_calibration_points(const std::string& file);
/// Fills `model` for every point by simulating them all in one simulation (call once per process).
void evaluate_calibration_points(std::vector<CalibrationPoint>& points, const core::Calibration& cal);

}  // namespace moesys::cli
