#include "sim/flow_carriers.hpp"

#include <cmath>
#include <string>

#include "sim/simgrid_adapter.hpp"

namespace moesys::sim {

struct FlowCarriers::Carrier {
  sg4::Mailbox* mailbox = nullptr;
  const Flow* flows = nullptr;  // the current batch
  std::size_t count = 0;
  // start: a batch for each actor; turn: whose move it is within a flow; done: each actor's side has arrived.
  sg4::SemaphorePtr start_receiver = sg4::Semaphore::create(0), start_sender = sg4::Semaphore::create(0);
  sg4::SemaphorePtr sender_turn = sg4::Semaphore::create(0), receiver_turn = sg4::Semaphore::create(0);
  sg4::SemaphorePtr done = sg4::Semaphore::create(0);
};

namespace {
int g_token;  // the payload every flow carries (SimGrid moves only its simulated size)
}  // namespace

FlowCarriers::FlowCarriers(sg4::Host* home) : home_(home) {}
FlowCarriers::~FlowCarriers() = default;

FlowCarriers::Carrier* FlowCarriers::take() {
  if (!idle_.empty()) {
    Carrier* c = idle_.back();
    idle_.pop_back();
    return c;
  }
  all_.push_back(std::make_unique<Carrier>());
  Carrier* c = all_.back().get();
  const std::string name = "flow-carrier-" + std::to_string(all_.size());
  c->mailbox = sg4::Mailbox::by_name(name);
  sg4::Actor::create(name + "/receiver", home_, [c] {
    for (;;) {
      c->start_receiver->acquire();
      std::vector<int*> slots(c->count, nullptr);
      std::vector<sg4::CommPtr> comms;
      comms.reserve(c->count);
      for (std::size_t i = 0; i < c->count; ++i) {
        sg4::this_actor::set_host(c->flows[i].to);
        comms.push_back(c->mailbox->get_async<int>(&slots[i]));
        c->sender_turn->release();
        c->receiver_turn->acquire();
      }
      sg4::Comm::wait_all(comms);
      c->done->release();
    }
  })->daemonize();
  sg4::Actor::create(name + "/sender", home_, [c] {
    for (;;) {
      c->start_sender->acquire();
      std::vector<sg4::CommPtr> comms;
      comms.reserve(c->count);
      for (std::size_t i = 0; i < c->count; ++i) {
        c->sender_turn->acquire();
        const Flow& f = c->flows[i];
        sg4::this_actor::set_host(f.from);
        const auto bytes = static_cast<std::uint64_t>(std::ceil(f.bytes));
        sg::register_flow_efficiency(f.from, f.to, bytes, f.efficiency);
        comms.push_back(c->mailbox->put_async(&g_token, bytes));  // matches the receive: the transfer starts
        c->receiver_turn->release();
      }
      sg4::Comm::wait_all(comms);
      c->done->release();
    }
  })->daemonize();
  return c;
}

void FlowCarriers::give_back(Carrier* c) { idle_.push_back(c); }

void FlowCarriers::run(const std::vector<Flow>& flows, std::size_t batch) {
  if (flows.empty()) return;
  std::vector<Carrier*> used;
  for (std::size_t first = 0; first < flows.size(); first += batch) {
    Carrier* c = take();
    c->flows = flows.data() + first;
    c->count = std::min(batch, flows.size() - first);
    c->start_receiver->release();
    c->start_sender->release();
    used.push_back(c);
  }
  for (Carrier* c : used) {
    c->done->acquire();  // the receiver's side
    c->done->acquire();  // and the sender's
    give_back(c);
  }
}

}  // namespace moesys::sim
