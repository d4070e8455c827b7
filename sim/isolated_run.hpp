#pragma once
// SimGrid allows one simulation per process, so a study of many runs simulates each run in a forked child.
// The child returns a JSON document through a pipe; errors come back with their category (bad input -> 
// core::ConfigError / core::InfeasibleError, anything else -> core::RuntimeFailure) and message.
#include <functional>

#include <nlohmann/json.hpp>

namespace moesys::sim {

/// Runs `fn` in a child process and returns its result. Rethrows the child's exception in this process.
nlohmann::json run_isolated(const std::function<nlohmann::json()>& fn);

}  // namespace moesys::sim
