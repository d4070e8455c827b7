#include "cli/cluster_options.hpp"

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/json_input.hpp"

namespace moesys::cli {

const std::set<std::string>& cluster_flags() {
  static const std::set<std::string> kFlags = {"--cluster",  "--nodes", "--gpus-per-node", "--nics-per-node",
                                               "--nic-gbps", "--gpu",   "--calibration"};
  return kFlags;
}

core::ClusterSpec cluster_from_args(const Args& args) {
  const bool generated = args.has("--nodes") || args.has("--gpus-per-node") || args.has("--nics-per-node") ||
                         args.has("--nic-gbps") || args.has("--gpu");
  if (auto file = args.get("--cluster")) {
    if (generated) throw core::ConfigError("", "--cluster", "give either a cluster file or generator flags, not both");
    return core::load_cluster_file(*file);
  }
  core::ClusterGeneratorOptions o;
  o.nodes = args.get_int("--nodes", o.nodes);
  o.gpus_per_node = args.get_int("--gpus-per-node", o.gpus_per_node);
  o.nics_per_node = args.get_int("--nics-per-node", o.nics_per_node);
  if (args.has("--nic-gbps")) o.nic_gbits_per_s = args.get_double("--nic-gbps", 0);
  o.gpu = args.get_or("--gpu", o.gpu);
  return core::generate_cluster(o);
}

core::Calibration calibration_from_args(const Args& args, const core::ClusterSpec& spec) {
  const core::Calibration base = core::default_calibration_for(core::gpu_family_of(spec.node.gpu.model));
  auto file = args.get("--calibration");
  if (!file) return base;
  return core::parse_calibration(core::read_json_file(*file), *file, base);
}

std::string describe(const core::ClusterSpec& c) {
  return c.name + " (" + std::to_string(c.nodes) + " nodes x " + std::to_string(c.node.gpus) + " " + c.node.gpu.model +
         ")";
}

}  // namespace moesys::cli
