#include "sim/flow_carriers.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>

#include "sim/simgrid_adapter.hpp"

namespace moesys::sim {

struct FlowCarriers::Carrier {
  sg4::Mailbox* mailbox = nullptr;
  const Flow* flows = nullptr;  // the current batch
  std::size_t count = 0;
  Shared shared = Shared::none;
  // start: a batch for each actor; turn: whose move it is; done: each actor's side has arrived.
  sg4::SemaphorePtr start_receiver = sg4::Semaphore::create(0), start_sender = sg4::Semaphore::create(0);
  sg4::SemaphorePtr sender_turn = sg4::Semaphore::create(0), receiver_turn = sg4::Semaphore::create(0);
  sg4::SemaphorePtr done = sg4::Semaphore::create(0);
};

namespace {
int g_token;  // the payload every flow carries (SimGrid moves only its simulated size)

// Posts the send side of a flow, with its rate bound if it has one (SimGrid keeps the sender's bound when a
// receive makes the match).
sg4::CommPtr post_send(sg4::Mailbox& mailbox, const Flow& f) {
  const auto bytes = static_cast<std::uint64_t>(std::ceil(f.bytes));
  if (f.rate_cap <= 0) return mailbox.put_async(&g_token, bytes);
  sg4::CommPtr comm = mailbox.put_init(&g_token, bytes);
  comm->set_rate(f.rate_cap);
  comm->start();
  return comm;
}
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
  // A transfer starts when a send and a receive match, between the two actors' hosts at that moment. When all
  // flows of a batch share their destination, the receiver stays there and posts every receive first, and each
  // send matches as it is posted; when they share their source, the sender stays there and posts every send
  // first, and each receive matches as it is posted. Otherwise the two actors take turns, one flow at a time.
  // The efficiency is registered right before the call that makes the match, so flows with the same endpoints
  // and size (from other carriers) take theirs in the order they start.
  sg4::Actor::create(name + "/receiver", home_, [c] {
    for (;;) {
      c->start_receiver->acquire();
      std::vector<int*> slots(c->count, nullptr);
      std::vector<sg4::CommPtr> comms;
      comms.reserve(c->count);
      if (c->shared == Shared::destination) {
        sg4::this_actor::set_host(c->flows[0].to);
        for (std::size_t i = 0; i < c->count; ++i) comms.push_back(c->mailbox->get_async<int>(&slots[i]));
        c->sender_turn->release();
      } else if (c->shared == Shared::source) {
        c->receiver_turn->acquire();  // every send is posted
        for (std::size_t i = 0; i < c->count; ++i) {
          const Flow& f = c->flows[i];
          sg4::this_actor::set_host(f.to);
          sg::register_flow_efficiency(f.from, f.to, static_cast<std::uint64_t>(std::ceil(f.bytes)), f.efficiency);
          comms.push_back(c->mailbox->get_async<int>(&slots[i]));  // matches the i-th send: the transfer starts
        }
      } else {
        for (std::size_t i = 0; i < c->count; ++i) {
          sg4::this_actor::set_host(c->flows[i].to);
          comms.push_back(c->mailbox->get_async<int>(&slots[i]));
          c->sender_turn->release();
          c->receiver_turn->acquire();
        }
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
      if (c->shared == Shared::source) {
        sg4::this_actor::set_host(c->flows[0].from);
        for (std::size_t i = 0; i < c->count; ++i) comms.push_back(post_send(*c->mailbox, c->flows[i]));
        c->receiver_turn->release();
      } else {
        if (c->shared == Shared::destination) c->sender_turn->acquire();  // every receive is posted
        for (std::size_t i = 0; i < c->count; ++i) {
          if (c->shared == Shared::none) c->sender_turn->acquire();
          const Flow& f = c->flows[i];
          sg4::this_actor::set_host(f.from);
          sg::register_flow_efficiency(f.from, f.to, static_cast<std::uint64_t>(std::ceil(f.bytes)), f.efficiency);
          comms.push_back(post_send(*c->mailbox, f));  // matches a posted receive: the transfer starts
          if (c->shared == Shared::none) c->receiver_turn->release();
        }
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
  // Batches of flows that share their destination, then of flows that share their source, then the rest. The
  // aggregated flow plan is mostly such: a GPU's egress halves end at its node's or leaf's switch, its ingress
  // halves start there.
  std::vector<Flow> sorted;
  std::vector<std::pair<std::size_t, Shared>> batches;  // first flow in `sorted`, and what its batch shares
  sorted.reserve(flows.size());
  auto group = [&](std::vector<Flow> in, sg4::Host* Flow::*end, Shared shared, std::vector<Flow>& singles) {
    std::stable_sort(in.begin(), in.end(), [end](const Flow& a, const Flow& b) {
      return std::less<const sg4::Host*>()(a.*end, b.*end);
    });
    for (std::size_t i = 0; i < in.size();) {
      std::size_t j = i + 1;
      while (j < in.size() && in[j].*end == in[i].*end) ++j;
      if (j - i == 1) {
        singles.push_back(in[i]);
      } else {
        for (std::size_t first = i; first < j; first += batch) {
          batches.emplace_back(sorted.size(), shared);
          sorted.insert(sorted.end(), in.begin() + static_cast<long>(first),
                        in.begin() + static_cast<long>(std::min(j, first + batch)));
        }
      }
      i = j;
    }
  };
  std::vector<Flow> no_shared_destination, neither;
  group(flows, &Flow::to, Shared::destination, no_shared_destination);
  group(std::move(no_shared_destination), &Flow::from, Shared::source, neither);
  for (std::size_t first = 0; first < neither.size(); first += batch) {
    batches.emplace_back(sorted.size(), Shared::none);
    sorted.insert(sorted.end(), neither.begin() + static_cast<long>(first),
                  neither.begin() + static_cast<long>(std::min(neither.size(), first + batch)));
  }
  std::vector<Carrier*> used;
  for (std::size_t b = 0; b < batches.size(); ++b) {
    const std::size_t first = batches[b].first, end = b + 1 < batches.size() ? batches[b + 1].first : sorted.size();
    Carrier* c = take();
    c->flows = sorted.data() + first;
    c->count = end - first;
    c->shared = batches[b].second;
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
