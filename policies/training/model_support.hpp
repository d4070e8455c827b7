#pragma once
// The parts of a model description that the generation mode of the one program does not run. Parameter and FLOP
// counts cover every field (core/model_config.hpp); a generation run of a model with such a part is refused before
// anything is simulated or launched, naming the field. Training runs every field.
#include <string>

#include "core/model_config.hpp"

namespace moesys::policies::training {

/// Throws ConfigError(file, "model.<field>", why) for the first part of `m` generation cannot run.
void check_program_runs(const core::ModelConfig& m, const std::string& file);

}  // namespace moesys::policies::training
