#pragma once
#include "cli/args.hpp"

namespace moesys::cli {
/// `moesys validate --preset | --policy | --compare` (see validate_policies.cpp).
int validate_policies(const Args& args);
}  // namespace moesys::cli
