#include "studies/experiment_kinds.hpp"

namespace moesys::studies {

std::map<std::string, ExperimentRunner>& experiment_kinds() {
  static std::map<std::string, ExperimentRunner> kinds;
  return kinds;
}

}  // namespace moesys::studies
