#include "policies/inference/policies.hpp"

#include <map>

#include "core/error.hpp"

namespace moesys::policies::inference {

namespace {
std::map<std::string, PolicyInfo>& registry() {
  static std::map<std::string, PolicyInfo> policies;
  return policies;
}
}  // namespace

PolicyRegistrar::PolicyRegistrar(std::string name, std::string summary,
                                 std::function<std::unique_ptr<WeightPolicy>()> make) {
  registry()[name] = PolicyInfo{name, std::move(summary), std::move(make)};
}

const PolicyInfo* find_policy(const std::string& name) {
  auto it = registry().find(name);
  return it == registry().end() ? nullptr : &it->second;
}

std::string policy_names() {
  std::string names;
  for (const auto& [name, info] : registry()) names += (names.empty() ? "" : ", ") + name;
  return names;
}

std::unique_ptr<WeightPolicy> make_policy(const std::string& name) {
  const PolicyInfo* info = find_policy(name);
  if (!info) throw core::ConfigError("", "policy", "unknown policy \"" + name + "\" (known: " + policy_names() + ")");
  return info->make();
}

}  // namespace moesys::policies::inference
