#include "policies/training/model_support.hpp"

#include "core/error.hpp"

namespace moesys::policies::training {

void check_program_runs(const core::ModelConfig& m, const std::string& file) {
  auto refuse = [&file](const std::string& field, const std::string& what) {
    throw core::ConfigError(file, "model." + field,
                            what + ": not yet run by the training program (its parameter and FLOP counts are)");
  };
  if (m.mtp_layers > 0) refuse("mtp_layers", "multi-token prediction");
}

}  // namespace moesys::policies::training
