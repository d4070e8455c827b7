#pragma once
// The tensor helpers moved to model/tensors.hpp (model code is shared by every runtime); these names keep the
// exec-side code that predates the move compiling.
#include "model/tensors.hpp"

namespace moesys::exec::model {
using moesys::model::download;
using moesys::model::download_floats;
using moesys::model::f32_bytes;
using moesys::model::free_param;
using moesys::model::make_param;
using moesys::model::normal_floats;
using moesys::model::Param;
using moesys::model::upload;
}  // namespace moesys::exec::model
