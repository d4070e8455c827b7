#pragma once
// Flows that share their links only with each other, finished in closed form instead of by SimGrid.
//
// Why: past a few hundred GPUs a training step is SimGrid's work on network flows (about 10 us each: activities,
// simcalls, the max-min solver), and most flows of a step share their links with few others or none (an
// expert-parallel group's all-to-all uses its members' NVLink ports, PCIe links and NICs, which other groups never
// touch). For such a set the max-min shares, and so every flow's end, follow from the flows alone.
//
// How: flows joined by the links they share form a component. The engine keeps, per SimGrid link, the SimGrid
// flows in flight on it and the solo component that holds it (until the last of its flows there ends). A new
// batch of flows (one run() call) joins the components holding its links; a component that stays within
// `max_component` flows and touches no link with SimGrid flows is solved in closed form (SoloFlows::solve: SimGrid's
// CM02 max-min sharing, progressive filling, rates that change as flows end) from the current instant, on what
// its flows have left; each flow then has a schedule of bytes left over time and its batch's actor sleeps until the
// last end (woken earlier if a later merge brings an end forward). A component that touches SimGrid's flows, or
// grows too large, goes to SimGrid at that instant with what its flows have left (bytes left at the instant, from
// the schedule); so does every flow whose link a SimGrid flow already uses. Max-min sharing is thus SimGrid's
// wherever a SimGrid flow is involved and the same sharing, solved here, everywhere else.
//
// Exact up to rounding: a component's flows get at every instant the rates SimGrid's solver would give them, as
// nothing else crosses their links, and a flow handed to SimGrid carries exactly the bytes it has left (rounded
// to whole bytes: SimGrid's sizes are integers). SimGrid flows count on their links until their batch ends (not
// each flow's own end), so some flows that could run solo run in SimGrid, never the reverse. Off
// (SimOptions::solo_flows false), every flow runs in SimGrid; tests/sim/test_solo_flows.cpp compares both.
#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include "sim/flow_carriers.hpp"

namespace moesys::sim {

class SoloFlows {
 public:
  /// Runs flows as SimGrid network actions and returns when all have arrived.
  using SimgridRun = std::function<void(const std::vector<Flow>&)>;

  /// `max_component`: the most flows a component solved in closed form may hold (the solver's work grows with
  /// the square of it per end); larger ones go to SimGrid.
  SoloFlows(bool enabled, SimgridRun simgrid, std::size_t max_component = 256);
  ~SoloFlows();
  SoloFlows(const SoloFlows&) = delete;
  SoloFlows& operator=(const SoloFlows&) = delete;

  /// Runs `flows` concurrently (in closed form where they share their links only with solo flows, in SimGrid
  /// otherwise) and blocks the calling actor until the last has arrived.
  void run(const std::vector<Flow>& flows);

  /// Flows that ended in closed form.
  std::uint64_t solo_flows() const { return solo_flows_; }
  /// Flows that started in closed form and finished in SimGrid (their component met SimGrid's flows).
  std::uint64_t met_flows() const { return met_flows_; }

 private:
  struct Batch;
  struct Component;
  struct SoloFlow;
  struct Point {
    double time, bytes;  // bytes left at that instant
  };
  struct LinkState {
    double capacity = 0;           // bytes/s
    int in_simgrid = 0;            // SimGrid flows in flight on the link (counted until their batch ends)
    Component* holder = nullptr;   // the solo component whose flows cross the link,
    double held_until = 0;         // until the last of them ends (holder is valid only while that is ahead)
    std::uint64_t last_batch = 0;  // the last batch that asked for the link, and the first of its flows on it
    std::size_t first_flow = 0;
    double fill_used = 0;  // progressive filling (solve): capacity given to fixed flows, flows not yet fixed
    int fill_unfixed = 0;
  };
  struct Route {
    std::vector<LinkState*> links;
    double bottleneck = 0;  // bytes/s of the slowest link
  };
  const Route& route(sg4::Host* from, sg4::Host* to);
 public:
  void check_dead(Component* c);
 private:
  /// Hands the component's flows to SimGrid with what they have left at the current instant.
  void to_simgrid(Component& c);
  /// Extends the schedules of the component's flows, each of which ends with the bytes it has left now.
  static void solve(double now, Component& c);
  static double bytes_left(const std::vector<Point>& points, double now);
  /// Starts the helpers and wakes the actors that to_simgrid and merges asked for (simcalls: other actors may run).
  void flush();
  /// Runs flows in SimGrid whose links the caller counted, and uncounts them.
  void run_in_simgrid(const std::vector<Flow>& flows, const std::vector<const Route*>& routes);

  bool enabled_;
  SimgridRun simgrid_;
  std::size_t max_component_;
  std::unordered_map<const void*, LinkState> links_;
  struct PairHash {
    std::size_t operator()(const std::pair<const void*, const void*>& p) const;
  };
  std::unordered_map<std::pair<const void*, const void*>, Route, PairHash> routes_;
  struct Helper {
    Batch* batch;
    sg4::SemaphorePtr wake;
    std::vector<Flow> flows;
    std::vector<const Route*> routes;
  };
  std::vector<Helper> helpers_;
  std::vector<sg4::SemaphorePtr> wakes_;
  std::uint64_t solo_flows_ = 0, met_flows_ = 0;
  std::uint64_t batches_ = 0;
};

}  // namespace moesys::sim
