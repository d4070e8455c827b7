#include "sim/solo_flows.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <deque>
#include <limits>

#include "sim/profile.hpp"

namespace moesys::sim {

namespace {
constexpr double kNever = std::numeric_limits<double>::infinity();
}

struct SoloFlows::SoloFlow {
  Flow flow;
  const Route* route = nullptr;
  // The most its variable u may reach: the route's slowest link, and its rate cap over its factor (SimGrid's
  // comm_action_set_bounds divides a user rate by the bandwidth factor the same way).
  double bound() const {
    return flow.rate_cap > 0 ? std::min(route->bottleneck, flow.rate_cap / flow.efficiency) : route->bottleneck;
  }
  Batch* owner = nullptr;
  // Bytes left at each instant the flow's rate changes, from its start to its end (bytes 0).
  std::vector<Point> points;
  std::shared_ptr<Component> component;  // while solo and running
  bool in_simgrid = false;               // handed to SimGrid after its component met SimGrid's flows
  double end() const { return points.back().time; }
};

struct SoloFlows::Component {
  std::vector<SoloFlow*> flows;
};

// The flows of one run() call and the actor waiting for them.
struct SoloFlows::Batch {
  std::deque<SoloFlow> flows;  // solo ones (a deque: components point at them)
  sg4::SemaphorePtr wake = sg4::Semaphore::create(0);
  double sleeping_until = kNever;  // when the actor's wait times out
  bool actor_busy = false;         // the actor runs SimGrid flows and cannot start others at once
  // Flows handed to SimGrid: those the actor has still to start, and all not yet arrived.
  std::vector<Flow> pending;
  std::vector<const Route*> pending_routes;
  std::size_t in_simgrid = 0;
  std::uint64_t seq = 0;  // order of creation
  double last_solo_end() const {
    double last = 0;
    for (const SoloFlow& f : flows)
      if (!f.in_simgrid) last = std::max(last, f.end());
    return last;
  }
};

std::size_t SoloFlows::PairHash::operator()(const std::pair<const void*, const void*>& p) const {
  const auto a = reinterpret_cast<std::uintptr_t>(p.first), b = reinterpret_cast<std::uintptr_t>(p.second);
  return static_cast<std::size_t>((a * 0x9e3779b97f4a7c15ull) ^ (b + 0x632be59bd9b4e019ull + (a << 6) + (a >> 2)));
}

SoloFlows::SoloFlows(bool enabled, SimgridRun simgrid, std::size_t max_component)
    : enabled_(enabled), simgrid_(std::move(simgrid)), max_component_(std::max<std::size_t>(1, max_component)) {}

SoloFlows::~SoloFlows() = default;

const SoloFlows::Route& SoloFlows::route(sg4::Host* from, sg4::Host* to) {
  auto [it, fresh] = routes_.try_emplace({from, to});
  if (fresh) {
    std::vector<sg4::Link*> links;
    double latency = 0;
    from->route_to(to, links, &latency);
    it->second.bottleneck = links.empty() ? 0 : links.front()->get_bandwidth();
    for (sg4::Link* l : links) {
      LinkState& state = links_[l];
      state.capacity = l->get_bandwidth();
      it->second.links.push_back(&state);
      it->second.bottleneck = std::min(it->second.bottleneck, l->get_bandwidth());
    }
  }
  return it->second;
}

void SoloFlows::run_in_simgrid(const std::vector<Flow>& flows, const std::vector<const Route*>& routes) {
  simgrid_(flows);
  for (const Route* r : routes)
    for (LinkState* l : r->links) --l->in_simgrid;
}

double SoloFlows::bytes_left(const std::vector<Point>& points, double now) {
  if (now <= points.front().time) return points.front().bytes;
  for (std::size_t k = 1; k < points.size(); ++k)
    if (now < points[k].time) {  // a constant rate between two points
      const Point &a = points[k - 1], &b = points[k];
      return a.bytes + (b.bytes - a.bytes) * (now - a.time) / (b.time - a.time);
    }
  return 0;
}

void SoloFlows::to_simgrid(Component& c) {
  const double now = sg4::Engine::get_clock();
  const std::vector<SoloFlow*> flows = std::move(c.flows);  // c dies when the last flow lets go of it
  std::vector<Batch*> woken;
  std::vector<Helper> helped;  // per batch whose actor is busy, in the order met (deterministic)
  for (SoloFlow* f : flows) {
    for (LinkState* l : f->route->links)
      if (l->holder == &c) l->holder = nullptr;
    if (f->end() <= now) continue;  // arrived: stays a solo flow
    // SimGrid carries what the flow has left, in whole bytes (SimGrid's sizes are integers).
    const double bytes = std::round(bytes_left(f->points, now));
    f->in_simgrid = true;
    f->points = {{now, bytes}};
    ++met_flows_;
    if (bytes < 0.5) continue;
    for (LinkState* l : f->route->links) ++l->in_simgrid;
    Batch& b = *f->owner;
    ++b.in_simgrid;
    if (b.actor_busy) {  // its actor waits for other SimGrid flows: a helper starts these now
      auto h = std::find_if(helped.begin(), helped.end(), [&](const Helper& x) { return x.batch == &b; });
      if (h == helped.end()) h = helped.insert(helped.end(), Helper{&b, b.wake, {}, {}});
      h->flows.push_back({f->flow.from, f->flow.to, bytes, f->flow.efficiency, f->flow.rate_cap});
      h->routes.push_back(f->route);
      continue;
    }
    if (b.pending.empty()) woken.push_back(&b);
    b.pending.push_back({f->flow.from, f->flow.to, bytes, f->flow.efficiency, f->flow.rate_cap});
    b.pending_routes.push_back(f->route);
  }
  for (SoloFlow* f : flows) f->component.reset();
  // No simcall here: one would let other actors run in the middle of run()'s bookkeeping. flush() does them.
  for (Batch* b : woken) wakes_.push_back(b->wake);  // the actor wakes at this instant and starts them
  for (Helper& h : helped) helpers_.push_back(std::move(h));
}

void SoloFlows::flush() {
  const std::vector<Helper> helpers = std::move(helpers_);
  const std::vector<sg4::SemaphorePtr> wakes = std::move(wakes_);
  helpers_.clear();
  wakes_.clear();
  profile::InSimgrid in;
  for (const Helper& h : helpers) {
    sg4::Host* host = h.flows.front().from;
    sg4::Actor::create("solo-met", host, [this, h] {
      profile::InSimgrid own;
      run_in_simgrid(h.flows, h.routes);
      h.batch->in_simgrid -= h.flows.size();  // the batch's actor may end as soon as this is 0: touch only `wake`
      h.wake->release();
    });
  }
  for (const sg4::SemaphorePtr& w : wakes) w->release();
}

void SoloFlows::solve(double now, Component& c) {
  // SimGrid's CM02 sharing (network_cm02.cpp and its lmm solver): a flow is a variable u that counts once on
  // every link of its route and is bounded by the route's slowest link (and its rate cap); max-min fairness raises all u not yet
  // fixed together until a link is full, fixes the flows crossing it at that level, and goes on with the rest. A
  // flow moves e x u bytes per second (e: its bandwidth factor). Rates change only when a flow of the component
  // ends.
  const std::size_t n = c.flows.size();
  std::vector<double> left(n), u(n);
  std::vector<char> running(n, 1), fixed(n);
  for (std::size_t m = 0; m < n; ++m) left[m] = c.flows[m]->points.back().bytes;
  std::size_t active = n;
  double t = now;
  while (active > 0) {
    for (std::size_t m = 0; m < n; ++m)
      for (LinkState* l : c.flows[m]->route->links) l->fill_used = 0, l->fill_unfixed = 0;
    for (std::size_t m = 0; m < n; ++m) {
      fixed[m] = !running[m];
      if (running[m])
        for (LinkState* l : c.flows[m]->route->links) ++l->fill_unfixed;
    }
    for (std::size_t unfixed = active; unfixed > 0;) {
      double level = kNever;
      for (std::size_t m = 0; m < n; ++m) {
        if (fixed[m]) continue;
        level = std::min(level, c.flows[m]->bound());
        for (const LinkState* l : c.flows[m]->route->links)
          level = std::min(level, (l->capacity - l->fill_used) / l->fill_unfixed);
      }
      std::vector<std::size_t> now_fixed;
      for (std::size_t m = 0; m < n; ++m) {
        if (fixed[m]) continue;
        bool full = c.flows[m]->bound() <= level;
        for (const LinkState* l : c.flows[m]->route->links)
          full = full || (l->capacity - l->fill_used) / l->fill_unfixed <= level;
        if (full) now_fixed.push_back(m);
      }
      for (std::size_t m : now_fixed) {
        fixed[m] = 1;
        u[m] = level;
        --unfixed;
        for (LinkState* l : c.flows[m]->route->links) l->fill_used += level, --l->fill_unfixed;
      }
    }
    double dt = kNever;
    for (std::size_t m = 0; m < n; ++m)
      if (running[m]) dt = std::min(dt, left[m] / (c.flows[m]->flow.efficiency * u[m]));
    t += dt;
    for (std::size_t m = 0; m < n; ++m) {
      if (!running[m]) continue;
      const double rate = c.flows[m]->flow.efficiency * u[m];
      left[m] = left[m] / rate <= dt * (1 + 1e-12) ? 0 : left[m] - rate * dt;
      c.flows[m]->points.push_back({t, left[m]});
      if (left[m] == 0) running[m] = 0, --active;
    }
  }
}

void SoloFlows::run(const std::vector<Flow>& flows) {
  if (flows.empty()) return;
  if (!enabled_) {
    profile::InSimgrid in;
    simgrid_(flows);
    return;
  }
  const std::size_t n = flows.size();
  std::vector<const Route*> routes;
  routes.reserve(n);
  for (const Flow& f : flows) routes.push_back(&route(f.from, f.to));
  const double now = sg4::Engine::get_clock();

  // Groups: the new flows joined by the links they share with each other or with a component still running
  // (union-find over the new flows, then the components they meet).
  ++batches_;
  std::vector<std::size_t> parent(n);
  std::vector<Component*> met;  // index n + k
  std::unordered_map<Component*, std::size_t> met_index;
  auto root = [&](std::size_t i) {
    while (parent[i] != i) i = parent[i] = parent[parent[i]];
    return i;
  };
  auto join = [&](std::size_t a, std::size_t b) {
    a = root(a), b = root(b);
    if (a != b) parent[std::max(a, b)] = std::min(a, b);
  };
  for (std::size_t i = 0; i < n; ++i) {
    parent[i] = i;
    for (LinkState* l : routes[i]->links) {
      if (l->holder && l->held_until > now) {
        auto [it, fresh] = met_index.try_emplace(l->holder, n + met.size());
        if (fresh) {
          met.push_back(l->holder);
          parent.push_back(it->second);
        }
        join(i, it->second);
      }
      if (l->last_batch != batches_) {
        l->last_batch = batches_;
        l->first_flow = i;
      } else {
        join(i, l->first_flow);
      }
    }
  }
  // A group is solved in closed form unless a flow of it crosses a link with SimGrid flows (or has a factor
  // SimGrid would not apply as a rate) or it would exceed max_component flows; then it goes to SimGrid whole.
  std::vector<std::size_t> size(parent.size(), 0);
  std::vector<char> to_sim(parent.size(), 0);
  for (std::size_t i = 0; i < n; ++i) {
    ++size[root(i)];
    bool ok = flows[i].efficiency <= 1 && routes[i]->bottleneck > 0;
    for (const LinkState* l : routes[i]->links) ok = ok && l->in_simgrid == 0;
    if (!ok) to_sim[root(i)] = 1;
  }
  for (std::size_t k = 0; k < met.size(); ++k)
    for (const SoloFlow* f : met[k]->flows) size[root(n + k)] += f->end() > now;
  for (std::size_t r = 0; r < parent.size(); ++r)
    if (size[r] > max_component_) to_sim[r] = 1;
  for (std::size_t k = 0; k < met.size(); ++k)
    if (to_sim[root(n + k)]) to_simgrid(*met[k]);

  auto b = std::make_shared<Batch>();
  b->seq = batches_;
  std::vector<Flow> shared;
  std::vector<const Route*> shared_routes;
  std::unordered_map<std::size_t, std::shared_ptr<Component>> groups;  // by root
  std::vector<Batch*> owners;  // of flows already running that a merge reschedules
  // The merged groups replace the components they met; flows that have arrived leave their component. (Applied
  // after the loop: the last flow to let go of a component destroys it.)
  std::vector<std::pair<SoloFlow*, std::shared_ptr<Component>>> reassign;
  for (std::size_t k = 0; k < met.size(); ++k) {
    const std::size_t r = root(n + k);
    if (to_sim[r]) continue;
    auto& g = groups[r];
    if (!g) g = std::make_shared<Component>();
    // What the component's flows have left now is where their new schedules start.
    for (SoloFlow* f : met[k]->flows) {
      for (LinkState* l : f->route->links)
        if (l->holder == met[k]) l->holder = nullptr;
      if (f->end() <= now) {
        reassign.emplace_back(f, nullptr);
        continue;
      }
      const double bytes = bytes_left(f->points, now);
      while (f->points.size() > 1 && f->points.back().time > now) f->points.pop_back();
      if (f->points.back().time < now) f->points.push_back({now, bytes});
      g->flows.push_back(f);
      reassign.emplace_back(f, g);
      owners.push_back(f->owner);
    }
  }
  for (auto& [f, g] : reassign) f->component = std::move(g);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t r = root(i);
    if (to_sim[r]) {
      shared.push_back(flows[i]);
      shared_routes.push_back(routes[i]);
      continue;
    }
    auto& g = groups[r];
    if (!g) g = std::make_shared<Component>();
    SoloFlow& f = b->flows.emplace_back();
    f.flow = flows[i];
    f.route = routes[i];
    f.owner = b.get();
    f.points = {{now, std::ceil(flows[i].bytes)}};
    f.component = g;
    g->flows.push_back(&f);
  }
  for (auto& [r, g] : groups) {
    if (g->flows.size() == 1) {
      // Alone on its route: SimGrid's rate is its bandwidth factor times the slowest link, or its cap.
      SoloFlow& f = *g->flows.front();
      const double bytes = f.points.back().bytes;
      f.points.push_back({now + bytes / (f.flow.efficiency * f.bound()), 0});
    } else {
      solve(now, *g);
    }
    for (SoloFlow* f : g->flows)
      for (LinkState* l : f->route->links) l->holder = g.get(), l->held_until = now;
    for (SoloFlow* f : g->flows)
      for (LinkState* l : f->route->links) l->held_until = std::max(l->held_until, f->end());
  }
  // Owners of rescheduled flows whose last end came earlier than their wait: wake them to wait again.
  // In batch order, not pointer order, so that runs are deterministic.
  std::sort(owners.begin(), owners.end(), [](const Batch* x, const Batch* y) { return x->seq < y->seq; });
  owners.erase(std::unique(owners.begin(), owners.end()), owners.end());
  for (Batch* o : owners)
    if (o->last_solo_end() < o->sleeping_until) wakes_.push_back(o->wake);
  flush();  // the bookkeeping is done: other actors may run from here on

  if (!shared.empty()) {
    for (const Route* r : shared_routes)
      for (LinkState* l : r->links) ++l->in_simgrid;
    b->actor_busy = true;
    profile::InSimgrid in;
    run_in_simgrid(shared, shared_routes);
    b->actor_busy = false;
  }
  // Wait for the batch's solo flows to end, starting in SimGrid whatever their components hand over meanwhile.
  for (;;) {
    if (!b->pending.empty()) {
      const std::vector<Flow> start = std::move(b->pending);
      const std::vector<const Route*> start_routes = std::move(b->pending_routes);
      b->pending.clear();
      b->pending_routes.clear();
      b->actor_busy = true;
      profile::InSimgrid in;
      run_in_simgrid(start, start_routes);
      b->actor_busy = false;
      b->in_simgrid -= start.size();
      continue;
    }
    const double last = b->last_solo_end(), t = sg4::Engine::get_clock();
    if (last <= t && b->in_simgrid == 0) break;
    b->sleeping_until = last > t ? last : kNever;
    profile::InSimgrid in;
    if (last > t)
      b->wake->acquire_timeout(last - t);
    else
      b->wake->acquire();
    b->sleeping_until = kNever;
  }
  for (SoloFlow& f : b->flows) {
    if (!f.in_simgrid) ++solo_flows_;
    if (!f.component) continue;
    auto& members = f.component->flows;
    members.erase(std::find(members.begin(), members.end(), &f));
  }
}

}  // namespace moesys::sim
