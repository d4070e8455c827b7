#include "sim/profile.hpp"

namespace moesys::sim::profile {

const char* to_string(Phase p) {
  switch (p) {
    case Phase::outside: return "outside";
    case Phase::program: return "program";
    case Phase::planning: return "planning";
    case Phase::simgrid: return "simgrid";
    case Phase::bookkeeping: return "bookkeeping";
  }
  return "?";
}

namespace detail {
State& state() {
  static State s;
  return s;
}
void charge(State& s) {
  const auto now = std::chrono::steady_clock::now();
  s.totals.seconds[static_cast<std::size_t>(s.current)] += std::chrono::duration<double>(now - s.since).count();
  s.since = now;
}
}  // namespace detail

void enable() {
  detail::State& s = detail::state();
  s = detail::State{};
  s.enabled = true;
  s.since = std::chrono::steady_clock::now();
}

bool enabled() { return detail::state().enabled; }

Totals totals() {
  detail::State& s = detail::state();
  if (s.enabled) detail::charge(s);
  return s.totals;
}

}  // namespace moesys::sim::profile
