#pragma once
// Where the simulator's wall time goes, for the profiling benchmark (bench/sim_profile.cpp). Off by default; when
// off every hook is one branch.
//
// SimGrid runs one actor at a time in one thread, so wall time is one timeline: at any instant exactly one
// phase is current. A Scope makes its phase current for its lifetime and charges the time spent to whichever
// phase was current. Every call into SimGrid that can switch actors (a simcall) is wrapped in a simgrid Scope:
// the actor that resumes afterwards closes its own simgrid Scope, which charges the time in between (solver,
// simcall handling, context switches) to SimGrid and restores that actor's own phase.
#include <array>
#include <chrono>
#include <cstdint>

namespace moesys::sim::profile {

enum class Phase {
  outside,      // before / after the simulation: platform build, result extraction, the caller's own work
  program,      // rank programs and the runtime calls they make (op records, queues, rendezvous matching)
  planning,     // collective plans and flow aggregation
  simgrid,      // inside SimGrid: the max-min solver, simcalls, actor switches, activity bookkeeping
  bookkeeping,  // spans, phases, memory ledgers
};
inline constexpr int kPhaseCount = 5;
const char* to_string(Phase p);

struct Totals {
  std::array<double, kPhaseCount> seconds{};
  std::uint64_t operations = 0;   // operations issued by all ranks
  std::uint64_t collectives = 0;  // collective instances (one per group call, not per member)
  std::uint64_t plan_reuses = 0;  // collectives whose plan came from the plan cache
  std::uint64_t blocks = 0;       // times an actor blocked waiting for another (work, an event, a rendezvous)
};

namespace detail {
struct State {
  bool enabled = false;
  Phase current = Phase::outside;
  std::chrono::steady_clock::time_point since{};
  Totals totals;
};
State& state();
void charge(State& s);  // adds the time since the last switch to the current phase
}  // namespace detail

/// Starts profiling in this process (zeroes the totals; the current phase becomes `outside`).
void enable();
bool enabled();
/// Totals so far (the current phase is charged up to now).
Totals totals();

/// Makes `p` the current phase for the scope's lifetime.
class Scope {
public:
  explicit Scope(Phase p) {
    detail::State& s = detail::state();
    if (!s.enabled) return;
    active_ = true;
    detail::charge(s);
    previous_ = s.current;
    s.current = p;
  }
  ~Scope() {
    if (!active_) return;
    detail::State& s = detail::state();
    detail::charge(s);
    s.current = previous_;
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

private:
  bool active_ = false;
  Phase previous_ = Phase::outside;
};

/// Wraps a call into SimGrid that may switch to other actors.
struct InSimgrid : Scope {
  InSimgrid() : Scope(Phase::simgrid) {}
};

inline void count_operation() {
  if (detail::State& s = detail::state(); s.enabled) ++s.totals.operations;
}
inline void count_collective(bool plan_reused) {
  if (detail::State& s = detail::state(); s.enabled) {
    ++s.totals.collectives;
    s.totals.plan_reuses += plan_reused ? 1 : 0;
  }
}
inline void count_block() {
  if (detail::State& s = detail::state(); s.enabled) ++s.totals.blocks;
}

}  // namespace moesys::sim::profile
