#pragma once
// SimGrid allows one simulation per process, so a study of many runs simulates each run in a forked child.
// The child returns a JSON document through a pipe; errors come back with their category (bad input ->
// core::ConfigError / core::InfeasibleError, anything else -> core::RuntimeFailure) and message.
#include <cstddef>
#include <exception>
#include <functional>

#include <nlohmann/json.hpp>

namespace moesys::sim {

/// Runs `fn` in a child process and returns its result. Rethrows the child's exception in this process.
nlohmann::json run_isolated(const std::function<nlohmann::json()>& fn);

/// What one of several isolated runs gave: its result, or the exception it raised.
struct IsolatedOutcome {
  nlohmann::json value;
  std::exception_ptr error;
  nlohmann::json reply;  // the child's reply as it came: {"ok": value} or {"error": kind, "what": ...}
};

/// The outcome a reply stands for (a reply kept from an earlier run, e.g. in a study's shard file).
IsolatedOutcome outcome_from_reply(const nlohmann::json& reply);

/// Runs fn(i) for every i < count, each in its own child process, at most `jobs` at a time. `done(i, outcome)` is
/// called in this process as each run ends, in the order they end; a run's result does not depend on `jobs`.
/// `started(i)`, when given, is called as run i starts.
void run_isolated_each(std::size_t count, int jobs, const std::function<nlohmann::json(std::size_t)>& fn,
                       const std::function<void(std::size_t, IsolatedOutcome&&)>& done,
                       const std::function<void(std::size_t)>& started = {});

}  // namespace moesys::sim
