#pragma once
// Simulating one generation run (shared by `moesys infer` and the "inference" experiment kind) and the study
// runner that `moesys experiment FILE` calls for {"kind": "inference", ...}.
#include <nlohmann/json.hpp>
#include <string>

#include "core/calibration.hpp"
#include "core/cluster.hpp"
#include "policies/inference/metrics.hpp"

namespace moesys::studies {

/// Host-to-device bandwidth of one GPU: its PCIe link at the calibrated efficiency for pinned copies.
double host_device_bytes_per_s(const core::ClusterSpec& spec, const core::Calibration& cal);

/// Runs the generation program on the simulated cluster (one SimGrid engine: call once per process, or inside
/// sim::run_isolated). Writes a Chrome trace of every rank when `trace_path` is not empty.
policies::inference::InferenceMetrics simulate_inference(const policies::inference::PreparedRun& run,
                                                         const core::ClusterSpec& spec, const core::Calibration& cal,
                                                         const std::string& trace_path = "");

}  // namespace moesys::studies
