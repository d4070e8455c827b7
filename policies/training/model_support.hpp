#pragma once
// The parts of a model description that the one training and generation program does not run yet. Parameter and
// FLOP counts cover every field (core/model_config.hpp); a run of a model with an unsupported part is refused
// before anything is simulated or launched, naming the field.
#include <string>

#include "core/model_config.hpp"

namespace moesys::policies::training {

/// Throws ConfigError(file, "model.<field>", why) for the first part of `m` the program cannot run.
void check_program_runs(const core::ModelConfig& m, const std::string& file);

}  // namespace moesys::policies::training
