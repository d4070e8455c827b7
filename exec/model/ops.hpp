#pragma once
// The kernel builders moved to model/ops.hpp (model code is shared by every runtime); this name keeps the
// exec-side code that predates the move compiling.
#include "model/ops.hpp"

namespace moesys::exec {
namespace ops = moesys::model::ops;
}  // namespace moesys::exec
