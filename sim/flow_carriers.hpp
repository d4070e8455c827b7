#pragma once
// Carries flows as mailbox communications between two helper actors, one moved to each endpoint.
//
// Why not Comm::sendto: SimGrid 3.32 detaches every host-to-host communication onto one list of the whole
// simulation (the maestro's activities) and removes each finished one with std::list::remove, a scan of that whole
// list. With N flows in flight every completion costs N, so a step of thousands of ranks spent most of its time in
// that scan (57% of samples at 1024 GPUs). A mailbox communication between two actors is kept on those two actors'
// own lists instead, which hold only the flows of one batch.
//
// How: a carrier is a pair of daemon actors, a receiver and a sender, sharing a mailbox. For each flow the receiver
// moves to the flow's destination host and posts a receive; then the sender moves to its source host and posts the
// matching send. SimGrid starts the transfer at that match, between the two actors' current hosts, so the flow
// takes exactly the route, size and efficiency a host-to-host communication from source to destination would:
// the same network action at the same instant (moves and hand-offs take no simulated time). Both actors then wait
// for their side of every flow of the batch. Carriers are pooled and reused. A batch whose flows share their
// destination (or their source) spares the turns: the receiver (or the sender) stays at the shared end and posts
// all its side first, and each flow starts as the other actor posts its own side.
#include <cstdint>
#include <memory>
#include <vector>

#include <simgrid/s4u.hpp>

namespace moesys::sim {

namespace sg4 = simgrid::s4u;

/// One SimGrid flow: endpoints, size and efficiency (see sg::register_flow_efficiency).
struct Flow {
  sg4::Host* from;
  sg4::Host* to;
  double bytes;
  double efficiency;
  double rate_cap = 0;  // > 0: at most this many bytes/s (SimGrid's Comm::set_rate)
};

class FlowCarriers {
public:
  /// Helper actors are created on `home` (any host) and moved to the endpoints of each flow.
  explicit FlowCarriers(sg4::Host* home);
  ~FlowCarriers();
  FlowCarriers(const FlowCarriers&) = delete;
  FlowCarriers& operator=(const FlowCarriers&) = delete;

  /// Starts every flow (in batches of at most `batch` per carrier) and blocks the calling actor until all have
  /// arrived. Each flow's efficiency is registered right before its transfer starts.
  void run(const std::vector<Flow>& flows, std::size_t batch);

private:
  /// What every flow of a carrier's batch has in common, which spares the per-flow turns (flow_carriers.cpp).
  enum class Shared { none, destination, source };
  struct Carrier;
  Carrier* take();
  void give_back(Carrier* c);

  sg4::Host* home_;
  std::vector<std::unique_ptr<Carrier>> all_;
  std::vector<Carrier*> idle_;
};

}  // namespace moesys::sim
