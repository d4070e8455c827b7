#include "exec/cpu/stream_engine.hpp"

#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <string>

namespace moesys::exec::cpu {

StreamEngine::StreamEngine(std::chrono::steady_clock::time_point origin, int compute_nice)
    : origin_(origin), compute_nice_(compute_nice) {}

StreamEngine::~StreamEngine() {
  quiesce();
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    for (auto& [id, s] : streams_) s->work.notify_all();
  }
  for (auto& [id, s] : streams_)
    if (s->worker.joinable()) s->worker.join();
}

double StreamEngine::now_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - origin_).count();
}

StreamEngine::Stream& StreamEngine::stream_locked(core::StreamId id) {
  auto& slot = streams_[id];
  if (!slot) slot = std::make_unique<Stream>();
  return *slot;
}

core::Event StreamEngine::submit(core::StreamId stream, std::function<void()> body, std::function<void()> on_ready) {
  std::lock_guard lock(mutex_);
  rethrow_locked();
  Stream& s = stream_locked(stream);
  // The worker starts with the stream's first operation, so that streams only waited on cost no thread.
  if (!s.worker.joinable()) s.worker = std::thread([this, stream, &s] { worker_loop(stream, s); });
  Queued q;
  q.event = next_event_++;
  q.deps = std::move(s.next_deps);
  s.next_deps.clear();
  q.body = std::move(body);
  q.on_ready = std::move(on_ready);
  pending_.insert(q.event);
  s.queue.push_back(std::move(q));
  if (!s.current && s.queue.size() == 1) ready_locked(s.queue.back());  // an idle stream reaches it at once
  s.work.notify_one();
  return core::Event{next_event_ - 1};
}

void StreamEngine::stream_wait(core::StreamId stream, core::Event event) {
  std::lock_guard lock(mutex_);
  rethrow_locked();
  if (pending_.count(event.id)) stream_locked(stream).next_deps.push_back(event.id);
}

template <typename Done>
void StreamEngine::host_wait(std::unique_lock<std::mutex>& lock, std::uint64_t event, Done done) {
  if (done()) return;
  const auto it = host_waits_.insert(event);
  done_.wait(lock, done);
  host_waits_.erase(it);
}

void StreamEngine::wait(core::Event event) {
  std::unique_lock lock(mutex_);
  host_wait(lock, event.id, [&] { return error_ || !pending_.count(event.id); });
  rethrow_locked();
}

void StreamEngine::synchronize() {
  std::unique_lock lock(mutex_);
  host_wait(lock, 0, [&] { return error_ || pending_.empty(); });
  rethrow_locked();
}

void StreamEngine::quiesce() {
  std::unique_lock lock(mutex_);
  host_wait(lock, 0, [&] { return pending_.empty(); });
}

void StreamEngine::ready_locked(Queued& q) {
  if (!q.on_ready || q.cancelled || error_) return;  // it will be skipped, not run
  for (std::uint64_t d : q.deps)
    if (pending_.count(d)) return;
  const std::function<void()> ready = std::move(q.on_ready);
  q.on_ready = nullptr;
  try {
    ready();
  } catch (...) {  // the operation is skipped and the host gets the failure at its next wait, as a body's
    if (!error_) error_ = std::current_exception();
  }
}

void StreamEngine::wake_after_locked(std::uint64_t event) {
  for (auto& [id, s] : streams_) {
    // An idle stream's next operation, issued while a dependency was pending, before its worker took it.
    if (!s->current && !s->queue.empty()) ready_locked(s->queue.front());
    if (s->blocked_on == 0 || pending_.count(s->blocked_on)) continue;
    if (s->current) ready_locked(*s->current);
    s->work.notify_one();
  }
  if (error_ || host_waits_.count(event) || (pending_.empty() && host_waits_.count(0))) done_.notify_all();
}

void StreamEngine::check() {
  std::lock_guard lock(mutex_);
  rethrow_locked();
}

std::uint64_t StreamEngine::issued_mark() const {
  std::lock_guard lock(mutex_);
  return next_event_;
}

std::uint64_t StreamEngine::completed_below() const {
  std::lock_guard lock(mutex_);
  return pending_.empty() ? next_event_ : *pending_.begin();
}

double StreamEngine::worker_cpu_s(core::StreamId stream) const {
  std::lock_guard lock(mutex_);
  const auto it = streams_.find(stream);
  clockid_t clock{};
  timespec t{};
  if (it == streams_.end() || ::pthread_getcpuclockid(it->second->worker.native_handle(), &clock) != 0 ||
      ::clock_gettime(clock, &t) != 0)
    return 0;
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

void StreamEngine::take_timings(std::vector<OpTiming>& out) {
  std::lock_guard lock(mutex_);
  out.insert(out.end(), std::make_move_iterator(finished_.begin()), std::make_move_iterator(finished_.end()));
  finished_.clear();
}

void StreamEngine::rethrow_locked() {
  if (!error_) return;
  // What was queued before the host learnt of the failure may depend on the failed operation: skip it.
  for (auto& [id, s] : streams_) {
    for (auto& q : s->queue) q.cancelled = true;
    if (s->current) s->current->cancelled = true;  // taken by its worker, maybe still waiting for a dependency
  }
  std::exception_ptr e = std::move(error_);
  error_ = nullptr;
  std::rethrow_exception(e);
}

void StreamEngine::worker_loop(core::StreamId id, Stream& s) {
  // Named after its stream, so that top -H, perf and debuggers tell the workers apart.
  (void)::pthread_setname_np(::pthread_self(), ("moesys-" + std::string(core::stream_name(id))).substr(0, 15).c_str());
  // On Linux the nice value belongs to the thread (PRIO_PROCESS with a thread id). Raising it needs no privilege;
  // where it fails the stream keeps the process's priority, which changes timing only.
  if (id == core::streams::kCompute && compute_nice_ != 0)
    (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)), ::getpriority(PRIO_PROCESS, 0) + compute_nice_);
  std::unique_lock lock(mutex_);
  for (;;) {
    s.work.wait(lock, [&] { return stopping_ || !s.queue.empty(); });
    if (s.queue.empty()) return;
    Queued q = std::move(s.queue.front());
    s.queue.pop_front();
    s.current = &q;
    ready_locked(q);
    for (std::uint64_t d : q.deps)
      while (pending_.count(d)) {
        s.blocked_on = d;
        s.work.wait(lock);
      }
    s.blocked_on = 0;
    ready_locked(q);  // its last dependency completed on a thread that did not see it (error paths)
    const bool run = !q.cancelled && !error_;
    lock.unlock();
    std::exception_ptr failure;
    const double start = now_s();
    if (run) {
      try {
        q.body();
      } catch (...) {
        failure = std::current_exception();
      }
    }
    const double end = run ? now_s() : start;
    q.body = nullptr;  // release what the body holds before the host can see the event complete
    q.on_ready = nullptr;
    lock.lock();
    s.current = nullptr;
    if (failure && !error_) error_ = failure;
    finished_.push_back({q.event, start, end});
    pending_.erase(q.event);
    wake_after_locked(q.event);
  }
}

}  // namespace moesys::exec::cpu
