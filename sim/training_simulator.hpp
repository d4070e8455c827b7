#pragma once
// Header-only glue between the training library and the SimGrid runtime, for the programs that link both
// (the moesys CLI and the simulation tests); it lives in sim/ because policies/ knows nothing of the runtimes.
#include "policies/training/training_run.hpp"
#include "sim/simulation.hpp"

namespace moesys::policies::training {

inline Simulator sim_simulator(const core::Calibration& calibration = core::default_calibration()) {
  return [calibration](const core::ClusterSpec& spec, int ranks, const std::function<void(core::Runtime&)>& program) {
    sim::SimOptions options;
    options.calibration = calibration;
    sim::SimResult r = sim::simulate(spec, ranks, program, options);
    SimulatedRun out;
    out.bytes_by_path_class = r.bytes_by_path_class;
    out.flows = r.flows;
    for (auto& rank : r.ranks) out.ranks.push_back({std::move(rank.spans), rank.memory});
    return out;
  };
}

}  // namespace moesys::policies::training
