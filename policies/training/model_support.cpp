#include "policies/training/model_support.hpp"

#include "core/error.hpp"

namespace moesys::policies::training {

void check_program_runs(const core::ModelConfig& m, const std::string& file) {
  if (m.mtp_layers > 0)
    throw core::ConfigError(file, "model.mtp_layers",
                            "multi-token prediction modules are trained, not served: generation runs the main model "
                            "(set \"mtp_layers\": 0)");
}

}  // namespace moesys::policies::training
