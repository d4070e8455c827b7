#include "sim/sim_runtime.hpp"

#include <algorithm>
#include <limits>
#include <simgrid/Exception.hpp>
#include <stdexcept>

#include "core/error.hpp"
#include "sim/compute_model.hpp"
#include "sim/profile.hpp"
#include "sim/progress_load.hpp"

namespace moesys::sim {

namespace sg4 = sg::sg4;

SimRuntime::SimRuntime(SimWorld& world, int rank, int world_size, bool coalesce_kernels)
    : world_(world),
      rank_(rank),
      world_size_(world_size),
      // Host memory and the SSD are shared by the GPUs of a node; each rank gets its share.
      ledger_(world.spec().node.gpu.hbm_bytes, world.spec().node.host_memory.capacity_bytes / world.spec().node.gpus,
              world.spec().node.ssd.capacity_bytes / world.spec().node.gpus),
      coalesce_kernels_(coalesce_kernels),
      gpu_load_(world.platform().gpu(rank), world.gpu_load_levels()) {}

double SimRuntime::now_s() const {
  return sg4::Engine::get_clock();
}

core::Buffer SimRuntime::alloc(core::Tier tier, std::uint64_t bytes, const std::string& tag) {
  profile::Scope in(profile::Phase::bookkeeping);
  ledger_.allocate(tier, bytes, tag);
  core::Buffer b{next_buffer_++, tier, bytes, nullptr};
  buffer_tags_[b.id] = tag;
  return b;
}

void SimRuntime::free(core::Buffer& buffer) {
  if (!buffer) return;
  profile::Scope in(profile::Phase::bookkeeping);
  auto it = buffer_tags_.find(buffer.id);
  if (it == buffer_tags_.end()) throw std::invalid_argument("free of a buffer this rank did not allocate");
  ledger_.release(buffer.tier, buffer.bytes, it->second);
  buffer_tags_.erase(it);
  buffer = core::Buffer{};
}

SimRuntime::Stream& SimRuntime::stream(core::StreamId id, bool start_actor) {
  auto [it, created] = streams_.try_emplace(id);
  Stream& s = it->second;
  if (created) {
    if (by_index_.size() > 0xfffe) throw std::invalid_argument("too many streams on one rank");
    s.id = id;
    s.index = static_cast<std::uint16_t>(by_index_.size());
    by_index_.push_back(&s);
  }
  if (start_actor && !s.started) {  // first operation on this stream
    s.started = true;
    std::string name = "rank" + std::to_string(rank_) + "/" + core::stream_name(id);
    profile::InSimgrid in;
    sg4::Actor::create(name, world_.platform().gpu(rank_), [this, &s] {
      profile::Scope own(profile::Phase::program);
      stream_loop(s);
    })->daemonize();
  }
  return s;
}

core::Event SimRuntime::enqueue(core::StreamId stream_id, Op op) {
  if (const double h = world_.calibration().host_op_s; h > 0) {
    // The host issues operations one after another, each taking h; it cannot run ahead of a wait it blocked in.
    host_clock_ = std::max(host_clock_, now_s()) + h;
    op.not_before = host_clock_;
  }
  Stream& s = stream(stream_id, true);
  const std::uint64_t event = next_event_++;
  event_stream_.push_back(s.index);
  event_awaited_.push_back(false);
  op.event = event;
  op.deps = std::move(s.next_deps);
  s.next_deps.clear();
  s.last_issued = event;
  s.queue.push_back(std::move(op));
  profile::count_operation();
  if (s.worker_idle) {
    s.worker_idle = false;
    // release() is a SimGrid simcall: the stream actor may run, pop and destroy the operation before this actor
    // resumes, so nothing in the queue may be read after it.
    profile::InSimgrid in;
    s.worker.wake->release();
  }
  return core::Event{event};
}

bool SimRuntime::done(std::uint64_t event) const {
  if (event == 0 || event >= next_event_) return true;  // "already complete", or not an event of this rank
  return by_index_[event_stream_[event - 1]]->last_done >= event;
}

bool SimRuntime::wait_for(std::uint64_t event, Waiter& self) {
  bool blocked = false;
  while (!done(event)) {
    Stream& s = *by_index_[event_stream_[event - 1]];
    RunPosition where = RunPosition::after;
    if (s.running) {
      where = locate_in_run(s, event);
      if (where == RunPosition::ended || where == RunPosition::moved) continue;
    }
    self.until = event;
    s.waiters.push_back(&self);
    if (where == RunPosition::inside) {
      // The execution in flight would run past the event: cancel it at its progress; the stream's actor restarts
      // it up to the event, since this waiter is registered now.
      KernelRun& r = *s.running;
      sg4::ExecPtr exec = std::move(r.exec);
      r.cancelled = true;
      ++s.exec_generation;
      profile::InSimgrid in;
      exec->cancel();
    }
    blocked = true;
    profile::count_block();
    profile::InSimgrid in;
    self.wake->acquire();
  }
  return blocked;
}

std::uint64_t SimRuntime::kernel_running_on(const Stream& s) const {
  if (s.kernel_in_flight) return s.kernel_in_flight;
  if (!s.running || s.running->next >= s.running->events.size()) return 0;
  return s.running->events[s.running->next];
}

bool SimRuntime::wait_behind_kernels(const Op& op, Stream& s) {
  // The block scheduler places the thread blocks of kernels of one priority in the order they reach it: a kernel
  // that fills the GPU (every GEMM does, split-K included: sim/compute_model.cpp) leaves the communication kernel
  // issued after it no SM until its own blocks are all placed and the ones before them retire. The kernels queued
  // behind it on its stream reach the scheduler after the communication kernel, so only the one running now counts.
  bool blocked = false;
  for (Stream* other : by_index_) {
    if (other == &s) continue;
    for (;;) {
      const std::uint64_t kernel = kernel_running_on(*other);
      if (kernel == 0 || kernel > op.event) break;
      if (wait_for(kernel, s.worker)) {
        blocked = true;
        break;  // it ended now: the next kernel of that stream comes after the communication kernel
      }
      // It had ended by its run's progress (now marked done): look at the next.
    }
  }
  return blocked;
}

SimRuntime::RunPosition SimRuntime::locate_in_run(Stream& s, std::uint64_t event) {
  KernelRun& r = *s.running;
  double progress = r.cancelled ? r.cancelled_at : r.done_work;
  if (r.exec) {
    // Reading the progress is a simcall, during which other actors may run and the run move on.
    const std::uint64_t generation = s.exec_generation;
    double remaining = 0;
    {
      profile::InSimgrid in;
      remaining = r.exec->get_remaining();
    }
    if (s.exec_generation != generation) return RunPosition::moved;
    progress = r.done_work + (r.exec_work - remaining);
  }
  const auto it = std::lower_bound(r.events.begin() + static_cast<long>(r.next), r.events.end(), event);
  if (it == r.events.end() || *it != event) return RunPosition::after;  // issued after the run was formed
  const auto index = static_cast<std::size_t>(it - r.events.begin());
  if (r.ends[index] <= progress + kWorkTolerance * r.ends.back()) {  // the kernel has ended within the execution
    r.next = index + 1;
    ++s.exec_generation;
    complete(s, event);
    return RunPosition::ended;
  }
  if (r.exec && index < r.stop) {
    r.cancelled_at = progress;
    return RunPosition::inside;
  }
  return RunPosition::after;  // the next execution stops at it (the caller registers as its waiter)
}

void SimRuntime::run_kernels(Stream& s, Op first, double start) {
  KernelRun r;
  r.events.push_back(first.event);
  r.ends.push_back(first.gpu_work);
  double flop = first.flop;
  std::uint64_t bytes = first.bytes;
  std::string last;
  // Kernels queued right behind, ready to start when the one before ends: they would start at that instant.
  while (!s.queue.empty()) {
    Op& next = s.queue.front();
    // A kernel still being issued when the run starts may start after its predecessor ends: not part of the run.
    if (next.gpu_work < 0 || next.not_before > start ||
        !std::all_of(next.deps.begin(), next.deps.end(), [&](auto e) { return done(e); }))
      break;
    r.events.push_back(next.event);
    r.ends.push_back(r.ends.back() + next.gpu_work);
    flop += next.flop;
    bytes += next.bytes;
    last = std::move(next.name);
    s.queue.pop_front();
  }
  const std::size_t n = r.events.size();
  s.running = &r;
  struct Detach {
    Stream& s;
    ~Detach() { s.running = nullptr; }
  } detach{s};
  sg4::Host* gpu = world_.platform().gpu(rank_);
  while (r.next < n) {
    // One execution up to the first kernel that is waited for, or that an issued operation depends on.
    auto stop_for = [&] {
      std::uint64_t awaited = std::numeric_limits<std::uint64_t>::max();
      for (const Waiter* w : s.waiters) awaited = std::min(awaited, w->until);
      std::size_t stop = r.next;
      while (stop + 1 < n && r.events[stop] < awaited && !event_awaited_[r.events[stop] - 1]) ++stop;
      return stop;
    };
    r.stop = stop_for();
    r.exec_work = r.ends[r.stop] - r.done_work;
    r.cancelled = false;
    sg4::ExecPtr exec = sg4::this_actor::exec_init(r.exec_work);
    exec->set_host(gpu);
    try {
      profile::InSimgrid in;
      exec->start();  // a simcall: a waiter may have registered meanwhile, without seeing this execution
      if (stop_for() < r.stop) {
        r.cancelled_at = r.done_work;
        r.cancelled = true;
        exec->cancel();
      } else {
        r.exec = exec;
        ++s.exec_generation;
      }
      exec->wait();
      r.exec = nullptr;
      ++s.exec_generation;
      r.done_work = r.ends[r.stop];
      r.next = std::max(r.next, r.stop + 1);
      complete(s, r.events[r.stop]);
    } catch (const simgrid::CancelException&) {
      // A waiter stopped the execution at r.cancelled_at (locate_in_run); kernels that ended by then are done.
      r.done_work = r.cancelled_at;
      std::size_t ended = r.next;
      while (ended < n && r.ends[ended] <= r.done_work + kWorkTolerance * r.ends.back()) ++ended;
      if (ended > r.next) {
        r.next = ended;
        complete(s, r.events[ended - 1]);
      }
    }
  }
  profile::Scope in(profile::Phase::bookkeeping);
  std::string name = n == 1 ? std::move(first.name)
                            : first.name + " .. " + last + " (" + std::to_string(n) + " kernels)";
  spans_.push_back({rank_, core::stream_name(s.id), core::SpanKind::compute, std::move(name), start,
                    sg4::Engine::get_clock(), bytes, flop});
}

void SimRuntime::complete(Stream& s, std::uint64_t event) {
  if (event <= s.last_done) return;
  s.last_done = event;
  if (s.waiters.empty()) return;
  // Take the waiters out before waking any: each release() lets other actors run, and they may register anew.
  std::vector<Waiter*> ready;
  auto keep = std::partition(s.waiters.begin(), s.waiters.end(), [event](const Waiter* w) { return w->until > event; });
  ready.assign(keep, s.waiters.end());
  s.waiters.erase(keep, s.waiters.end());
  profile::InSimgrid in;
  for (Waiter* w : ready) w->wake->release();
}

void SimRuntime::stream_loop(Stream& s) {
  const double wake_s = world_.calibration().stream_wake_s;
  // A compute worker woken while every core of its node runs another rank's kernel waits for a scheduler slice
  // (Calibration::busy_compute_wake_s): on CPU ranks only, where kernels take the node's slots.
  const double busy_wake_s = world_.calibration().busy_compute_wake_s;
  const double slot_handoff_s = world_.calibration().slot_handoff_s;
  sg4::Semaphore* slots = s.id == core::streams::kCompute && busy_wake_s > 0 && progress_slots()
                              ? &world_.compute_slots(world_.spec().node_of(rank_))
                              : nullptr;
  for (;;) {
    bool slept = false;  // the stream was idle: its operation starts once the worker has woken up
    while (s.queue.empty()) {
      slept = true;
      s.worker_idle = true;
      profile::count_block();
      profile::InSimgrid in;
      s.worker.wake->acquire();
    }
    Op op = std::move(s.queue.front());
    s.queue.pop_front();
    for (auto dep : op.deps) slept = wait_for(dep, s.worker) || slept;
    if (op.holds_sms && world_.calibration().comm_waits_behind_kernels > 0) slept = wait_behind_kernels(op, s) || slept;
    if (const double wait = op.not_before - sg4::Engine::get_clock(); wait > 0) {  // the host is still issuing it
      profile::InSimgrid in;
      sg4::this_actor::sleep_for(wait);
      slept = true;  // on a real stream nothing was queued yet: its worker wakes up for it
    }
    const double w = !slept ? 0.0 : slots && slots->would_block() ? busy_wake_s : wake_s;
    double start = sg4::Engine::get_clock() + w;
    if (op.slots) {
      // The kernel queues for a slot from the moment it is ready, while its worker wakes up (exec/cpu's tickets).
      // One that had to wait for another rank's kernel to release the slot starts a handoff later: its worker,
      // asleep on its ticket, is woken and waits for the core (Calibration::slot_handoff_s); the slot is held
      // and idle meanwhile.
      profile::InSimgrid in;
      const double ready = sg4::Engine::get_clock();
      const bool queued = op.slots->would_block();
      op.slots->acquire();
      const double now = sg4::Engine::get_clock();
      const double go = std::max(ready + w, queued ? now + slot_handoff_s : now);
      if (go > now) sg4::this_actor::sleep_for(go - now);  // the span starts at ready + w, before the slot wait
    } else if (w > 0) {
      profile::InSimgrid in;
      sg4::this_actor::sleep_for(w);
    }
    if (coalesce_kernels_ && op.gpu_work >= 0) {
      run_kernels(s, std::move(op), start);
      continue;
    }
    if (op.gpu_work >= 0) s.kernel_in_flight = op.event;
    try {
      op.body();
    } catch (const simgrid::ForcefulKillException&) {
      throw;  // the actor is being ended (deadlock or the end of the run): not a failure of the operation
    } catch (...) {
      world_.record_failure(std::current_exception());
      sg4::Actor::kill_all();
      return;
    }
    s.kernel_in_flight = 0;
    {
      profile::Scope in(profile::Phase::bookkeeping);
      spans_.push_back(
          {rank_, core::stream_name(s.id), op.kind, op.name, start, sg4::Engine::get_clock(), op.bytes, op.flop});
    }
    if (!op.written.empty()) world_.slot_caches(world_.spec().node_of(rank_))->forget(op.written);
    complete(s, op.event);
  }
}

core::Event SimRuntime::compute(core::StreamId stream, const core::Kernel& kernel, std::string_view name) {
  KernelCost cost = kernel_cost(kernel, world_.spec().node.gpu, world_.calibration());
  Op op;
  op.kind = core::SpanKind::compute;
  op.name = std::string(name);
  op.flop = cost.flop;
  op.bytes = static_cast<std::uint64_t>(cost.bytes);
  // Kernels are work on the GPU host (speed 1e9 per second), so concurrent kernels share the GPU; on a machine of
  // CPU ranks, on the node's compute slots, so that the ranks' kernels share the cores.
  sg4::Host* host = world_.platform().compute_host(rank_);
  if (host == world_.platform().gpu(rank_)) {
    op.gpu_work = cost.seconds * 1e9;
    op.body = [seconds = cost.seconds] {
      profile::InSimgrid in;
      sg4::this_actor::execute(seconds * 1e9);
    };
  } else {
    // A kernel takes one of the node's slots whole and runs on it to the end (waiting, in arrival order, while
    // all are taken), as the CPU runtime's kernels do; what else runs on the slots (communication's polling,
    // sim/progress_load.hpp) shares the cores with it.
    const int node = world_.spec().node_of(rank_);
    op.slots = &world_.compute_slots(node);
    // Where the machine's kernels were measured hot as well as cold, the time depends on what the cache of the slot
    // the kernel lands on holds when it starts (sim/operand_cache.hpp).
    SlotCaches* caches = world_.slot_caches(node);
    std::vector<Extent> operands = caches ? operand_extents(kernel, rank_) : std::vector<Extent>{};
    op.body = [cost, host, &slots = *op.slots, caches, operands = std::move(operands), rank = rank_] {
      double seconds = cost.seconds;
      OperandCache* cache = caches ? &caches->take(rank) : nullptr;
      if (cache) {
        seconds += cache->held_share(operands) * (cost.hot_seconds - cost.seconds);
        cache->touch(operands);
      }
      profile::InSimgrid in;
      sg4::ExecPtr exec = sg4::this_actor::exec_init(seconds * 1e9);
      exec->set_host(host);
      exec->start();
      exec->wait();
      if (cache) caches->give(*cache);
      slots.release();
    };
  }
  return enqueue(stream, std::move(op));
}

core::Event SimRuntime::copy(core::StreamId stream, const core::Buffer& dst, const core::Buffer& src,
                             std::uint64_t bytes) {
  const int node = world_.spec().node_of(rank_);
  const Platform& p = world_.platform();
  FlowEngine& flows = world_.flows();
  const double b = static_cast<double>(bytes);
  auto hop = [&, node](core::Tier from, core::Tier to) -> std::function<void()> {
    using core::Tier;
    if (from == Tier::dram && to == Tier::hbm)
      return [&p, &flows, node, b, r = rank_] { flows.engine_copy(p.cpu(node), p.gpu(r), b); };
    if (from == Tier::hbm && to == Tier::dram)
      return [&p, &flows, node, b, r = rank_] { flows.engine_copy(p.gpu(r), p.cpu(node), b); };
    if (from == Tier::ssd && to == Tier::dram)
      return [&p, &flows, node, b] { flows.copy(p.ssd(node), p.cpu(node), b); };
    if (from == Tier::dram && to == Tier::ssd)
      return [&p, &flows, node, b] { flows.copy(p.cpu(node), p.ssd(node), b); };
    if (from == to && from == Tier::hbm) {
      const double s = 2 * b / (world_.spec().node.gpu.hbm_bytes_per_s * world_.calibration().hbm_efficiency);
      return [s] {
        profile::InSimgrid in;
        sg4::this_actor::execute(s * 1e9);
      };
    }
    if (from == to && from == Tier::dram) {
      const double s = 2 * b / world_.spec().node.host_memory.bytes_per_s;
      return [s] {
        profile::InSimgrid in;
        sg4::this_actor::sleep_for(s);
      };
    }
    return nullptr;
  };
  if ((src.tier == core::Tier::ssd || dst.tier == core::Tier::ssd) && !p.ssd(node))
    throw core::InfeasibleError("copy to or from the SSD tier, but cluster '" + world_.spec().name + "' has no SSD");
  std::function<void()> body = hop(src.tier, dst.tier);
  if (!body) {
    // HBM <-> SSD has no direct path: stage through host memory.
    auto first = hop(src.tier, core::Tier::dram), second = hop(core::Tier::dram, dst.tier);
    if (!first || !second) throw std::invalid_argument("copy between these tiers is not supported");
    body = [first, second] {
      first();
      second();
    };
  }
  Op op;
  op.kind = core::SpanKind::copy;
  op.name = std::string("copy ") + core::to_string(src.tier) + "->" + core::to_string(dst.tier);
  op.bytes = bytes;
  op.body = std::move(body);
  op.written = written_extents(dst, bytes);
  return enqueue(stream, std::move(op));
}

core::Event SimRuntime::peer_copy(core::StreamId stream, int peer, std::uint64_t bytes) {
  const core::ClusterSpec& spec = world_.spec();
  if (peer < 0 || peer >= spec.total_gpus() || spec.node_of(peer) != spec.node_of(rank_) || peer == rank_)
    throw std::invalid_argument("peer copy from GPU " + std::to_string(rank_) + " to GPU " + std::to_string(peer) +
                                ": expected another GPU of the same node");
  FlowEngine& flows = world_.flows();
  Op op;
  op.kind = core::SpanKind::copy;
  op.name = "copy hbm->peer hbm";
  op.bytes = bytes;
  op.body = [&flows, from = rank_, peer, b = static_cast<double>(bytes)] { flows.peer_copy(from, peer, b); };
  return enqueue(stream, std::move(op));
}

GpuLoad* SimRuntime::progress_gpu() {
  return world_.platform().compute_host(rank_) == world_.platform().gpu(rank_) ? &gpu_load_ : nullptr;
}

sg4::Host* SimRuntime::progress_slots() const {
  sg4::Host* host = world_.platform().compute_host(rank_);
  return host == world_.platform().gpu(rank_) ? nullptr : host;
}

SimRuntime::GroupRef SimRuntime::group_ref(const core::Group& group, const char* what) {
  // A rank uses a handful of groups; comparing keys (size first) is cheaper than hashing them.
  for (const GroupRef& g : groups_)
    if (g.group.same_as(group)) return g;
  const int index = group.index_of(rank_);
  if (index < 0)
    throw std::invalid_argument(std::string(what) + ": rank " + std::to_string(rank_) + " is not in the group");
  if (groups_.size() >= kGroupCacheSize) groups_.erase(groups_.begin());
  groups_.push_back({group, world_.intern_group(group), index,
                     communication_share(world_.spec(), world_.calibration(), group.ranks(), rank_)});
  return groups_.back();
}

core::Event SimRuntime::collective(core::StreamId stream, CollectiveOp opcode, const core::Group& group, double bytes,
                                   core::CollectiveAlgo algo, std::vector<double> row, std::uint64_t traced_bytes,
                                   const core::Buffer& written) {
  const GroupRef g = group_ref(group, to_string(opcode));
  const core::CollectiveAlgo resolved = resolve_algo(opcode, algo);  // reject an unsupported algorithm here
  if ((resolved == core::CollectiveAlgo::nvls || resolved == core::CollectiveAlgo::nvls_tree) &&
      !has_nvlink_sharp(world_.spec()))
    throw std::invalid_argument(std::string("algorithm '") + core::to_string(resolved) +
                                "' needs NVLink SHARP (NVSwitch nodes of H100, H800 or H200 GPUs)");
  if (resolved == core::CollectiveAlgo::copy_engine) check_copy_engine(world_.spec(), group.ranks());
  RendezvousKey key{static_cast<int>(opcode), g.id, 0, 0, 0};
  key.sequence = sequence_[RendezvousKey{kGroupSequence, g.id, 0, 0, 0}]++;
  Op op;
  op.kind = core::SpanKind::collective;
  // An automatic all-reduce is named by its operation alone: the algorithm is chosen per call when it runs.
  op.name = std::string(to_string(opcode)) +
            (resolved == core::CollectiveAlgo::automatic ? "" : std::string("/") + core::to_string(resolved));
  op.bytes = traced_bytes;
  op.written = written_extents(written);
  // A copy-engine collective holds no SMs: only its copies' HBM traffic weighs on the rank's kernels.
  const double share = resolved == core::CollectiveAlgo::copy_engine
                           ? copy_engine_share(world_.spec(), world_.calibration())
                           : g.comm_share;
  op.holds_sms = resolved != core::CollectiveAlgo::copy_engine && progress_gpu() != nullptr;
  op.body = [this, key, opcode, bytes, algo, idx = g.index, share, row = std::move(row)]() mutable {
    const ProgressLoad polling(progress_slots(), progress_gpu(), world_.calibration(), share);
    world_.join(key, opcode, world_.group_members(key.a), bytes, algo, idx, std::move(row));
  };
  return enqueue(stream, std::move(op));
}

core::Event SimRuntime::all_reduce(core::StreamId stream, const core::Group& group, const core::Buffer& buffer,
                                   std::uint64_t bytes, core::Dtype, core::CollectiveAlgo algo) {
  return collective(stream, CollectiveOp::all_reduce, group, static_cast<double>(bytes), algo, {}, bytes, buffer);
}

core::Event SimRuntime::reduce_scatter(core::StreamId stream, const core::Group& group, const core::Buffer&,
                                       const core::Buffer& recv, std::uint64_t bytes, core::Dtype,
                                       core::CollectiveAlgo algo) {
  return collective(stream, CollectiveOp::reduce_scatter, group, static_cast<double>(bytes), algo, {}, bytes, recv);
}

core::Event SimRuntime::all_gather(core::StreamId stream, const core::Group& group, const core::Buffer&,
                                   const core::Buffer& recv, std::uint64_t bytes, core::CollectiveAlgo algo) {
  return collective(stream, CollectiveOp::all_gather, group, static_cast<double>(bytes), algo, {}, bytes, recv);
}

core::Event SimRuntime::all_to_all(core::StreamId stream, const core::Group& group, const core::Buffer&,
                                   const std::vector<std::uint64_t>& send_bytes, const core::Buffer& recv,
                                   const std::vector<std::uint64_t>&, core::CollectiveAlgo algo,
                                   const core::NodeTraffic& nodes) {
  if (static_cast<int>(send_bytes.size()) != group.size())
    throw std::invalid_argument("all_to_all: send_bytes has " + std::to_string(send_bytes.size()) +
                                " entries for a group of " + std::to_string(group.size()));
  std::vector<double> row(send_bytes.begin(), send_bytes.end());
  std::uint64_t total = 0;
  for (auto b : send_bytes) total += b;
  if (algo == core::CollectiveAlgo::deepep) append_node_traffic(world_.spec(), group.ranks(), nodes, row);
  return collective(stream, CollectiveOp::all_to_all, group, 0.0, algo, std::move(row), total, recv);
}

core::Event SimRuntime::point_to_point(core::StreamId stream, int src, int dst, std::uint64_t bytes, int tag,
                                       bool sending, const core::Buffer& written) {
  // A message is a two-member rendezvous: both sides meet, the later one moves the bytes.
  RendezvousKey key{RendezvousKey::kPointToPoint, src, dst, tag, 0};
  key.sequence = sequence_[key]++;
  const double b = static_cast<double>(bytes);
  Op op;
  op.kind = core::SpanKind::comm;
  op.name = sending ? "send" : "recv";
  op.bytes = bytes;
  op.written = written_extents(written);
  const double share = communication_share(world_.spec(), world_.calibration(), {src, dst}, rank_);
  op.holds_sms = progress_gpu() != nullptr;
  op.body = [this, key, b, sending, share] {
    const ProgressLoad polling(progress_slots(), progress_gpu(), world_.calibration(), share);
    world_.join(key, CollectiveOp::all_to_all, {key.a, key.b}, b, core::CollectiveAlgo::direct, sending ? 0 : 1,
                sending ? std::vector<double>{0.0, b} : std::vector<double>{0.0, 0.0});
  };
  return enqueue(stream, std::move(op));
}

core::Event SimRuntime::send(core::StreamId stream, int peer, const core::Buffer&, std::uint64_t bytes, int tag) {
  return point_to_point(stream, rank_, peer, bytes, tag, true, core::Buffer{});
}

core::Event SimRuntime::recv(core::StreamId stream, int peer, const core::Buffer& buffer, std::uint64_t bytes,
                             int tag) {
  return point_to_point(stream, peer, rank_, bytes, tag, false, buffer);
}

std::vector<Extent> SimRuntime::written_extents(const core::Buffer& buffer, std::uint64_t bytes) {
  bytes = std::min(bytes, buffer.bytes);
  if (!buffer || !bytes || !world_.slot_caches(world_.spec().node_of(rank_))) return {};
  return {Extent{rank_, buffer.id, buffer.offset, buffer.offset + bytes}};
}

void SimRuntime::wait(core::Event event) {
  wait_for(event.id, host_);
}

void SimRuntime::stream_wait(core::StreamId stream_id, core::Event event) {
  if (event.id == 0) return;
  if (event.id < next_event_) event_awaited_[event.id - 1] = true;  // a coalesced run stops at it (run_kernels)
  stream(stream_id, false).next_deps.push_back(event.id);
}

void SimRuntime::synchronize() {
  for (Stream* s : by_index_) wait_for(s->last_issued, host_);
}

void SimRuntime::begin_phase(std::string_view name) {
  profile::Scope in(profile::Phase::bookkeeping);
  open_phases_.emplace_back(std::string(name), now_s());
}

void SimRuntime::end_phase() {
  if (open_phases_.empty()) return;
  profile::Scope in(profile::Phase::bookkeeping);
  auto [name, start] = open_phases_.back();
  open_phases_.pop_back();
  spans_.push_back({rank_, "host", core::SpanKind::phase, name, start, now_s(), 0, 0});
}

}  // namespace moesys::sim
