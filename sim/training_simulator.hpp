#pragma once
// Header-only glue between the training library and the SimGrid runtime, for the programs that link both
// (the moesys CLI and the simulation tests); it lives in sim/ because policies/ knows nothing of the runtimes.
#include "policies/training/training_run.hpp"
#include "sim/simulation.hpp"

namespace moesys::policies::training {

/// `options`: the simulator's settings (calibration, flow settings) for every run.
inline Simulator sim_simulator(const sim::SimOptions& options) {
  return [options](const core::ClusterSpec& spec, int ranks, const std::function<void(core::Runtime&)>& program) {
    sim::SimResult r = sim::simulate(spec, ranks, program, options);
    SimulatedRun out;
    out.bytes_by_path_class = r.bytes_by_path_class;
    out.flows = r.flows;
    out.solo_flows = r.solo_flows;
    out.met_flows = r.met_flows;
    for (auto& rank : r.ranks) out.ranks.push_back({std::move(rank.spans), rank.memory});
    return out;
  };
}

/// `kernel_spans`: one span per kernel (for traces and per-kernel comparisons), not one per run of kernels
/// (SimOptions::coalesce_kernels).
inline Simulator sim_simulator(const core::Calibration& calibration = core::default_calibration(),
                               bool kernel_spans = false) {
  sim::SimOptions options;
  options.calibration = calibration;
  options.coalesce_kernels = !kernel_spans;
  return sim_simulator(options);
}

}  // namespace moesys::policies::training
