#pragma once
// The cluster and calibration options shared by every simulating subcommand:
//   --cluster FILE | --nodes N --gpus-per-node G --nics-per-node K --nic-gbps B
//   --gpu a100-80g|a100-40g|h100|h200|h800
//   --calibration FILE (overrides the built-in efficiency table)
#include <set>
#include <string>

#include "cli/args.hpp"
#include "core/calibration.hpp"
#include "core/cluster.hpp"

namespace moesys::cli {

const std::set<std::string>& cluster_flags();
/// Without any cluster flag: the generator's defaults, the paper's 6 x 8 A100-80GB cluster.
core::ClusterSpec cluster_from_args(const Args& args);
/// The cluster's GPU family's built-in parameters, with --calibration FILE's over them.
core::Calibration calibration_from_args(const Args& args, const core::ClusterSpec& spec);
std::string describe(const core::ClusterSpec& c);

}  // namespace moesys::cli
