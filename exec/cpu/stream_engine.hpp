#pragma once
// The asynchronous half of the CPU runtime: one worker thread per stream, created on the stream's first use, runs
// that stream's operations in issue order. Ordering across streams follows CUDA's cudaStreamWaitEvent: an event
// handed to stream_wait becomes a dependency of the next operation issued on that stream, whose worker does not
// start it before the event has completed.
//
// Errors: an operation that throws on a worker records the exception; operations still queued are then skipped
// (their events complete without running them, as after a sticky CUDA error, so nothing waits forever on them) and
// the host gets the original exception object, of its own type, at its next wait, synchronize or issue. Once the
// host has seen it, the runtime can be used again: only operations issued before that point are skipped.
//
// The engine reports when each operation's body started and ended on its worker; the runtime turns these times
// into the operation's span.
//
// Wake-ups are targeted: a completion wakes the workers blocked on that event and the host only when its wait is
// over, not every thread of the rank. On a machine whose cores the ranks' kernels already share, waking every
// waiter at every completion left the next kernel's worker queueing for a core behind threads that would only go
// back to sleep (tens of microseconds per kernel).
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "core/runtime.hpp"

namespace moesys::exec::cpu {

/// When an operation ran on its worker, in seconds since the engine's origin. An operation skipped after a failure
/// has start == end == the moment it was skipped.
struct OpTiming {
  std::uint64_t event = 0;
  double start_s = 0, end_s = 0;
};

class StreamEngine {
 public:
  /// Times are seconds since `origin`. The compute stream's worker runs at nice value `compute_nice` (added to
  /// the process's), so that threads that only move data or progress messages get a core as soon as they are ready,
  /// as a GPU's copy engines and communication kernels do beside compute (see CpuOptions::compute_nice).
  explicit StreamEngine(std::chrono::steady_clock::time_point origin, int compute_nice = 0);
  /// Waits for every queued operation (without throwing) and joins the workers.
  ~StreamEngine();
  StreamEngine(const StreamEngine&) = delete;
  StreamEngine& operator=(const StreamEngine&) = delete;

  /// Queues `body` on `stream` behind the events given to stream_wait since the stream's previous operation.
  /// `on_ready`, if given, runs once, under the engine's lock, on whichever thread makes the operation ready (its
  /// stream reached it and its dependencies completed): the host that issues it to an idle stream, the worker that
  /// finished the operation before it, or the thread that completed its last dependency. It runs before the body
  /// (or not at all if the operation is skipped) and must be short; if it throws, the operation fails as if its
  /// body had thrown.
  /// Rethrows a worker's error not yet reported instead of queueing.
  core::Event submit(core::StreamId stream, std::function<void()> body, std::function<void()> on_ready = {});
  /// Later operations on `stream` wait for `event` (nothing to do for an event that has completed).
  void stream_wait(core::StreamId stream, core::Event event);
  /// Blocks until `event` has completed; rethrows a worker's error (at once, even if `event` is still running).
  void wait(core::Event event);
  /// Blocks until every stream is idle; rethrows a worker's error.
  void synchronize();
  /// Blocks until every stream is idle and reports nothing: for releasing memory and for destruction.
  void quiesce();
  /// Rethrows a worker's error not yet reported.
  void check();

  /// Every operation issued before a call returning w has completed once completed_below() >= w.
  std::uint64_t issued_mark() const;
  std::uint64_t completed_below() const;

  /// CPU time that `stream`'s worker thread has used (0 before the stream's first operation): what polling costs.
  double worker_cpu_s(core::StreamId stream) const;

  /// Moves the timings of the operations finished since the last call to the end of `out`.
  void take_timings(std::vector<OpTiming>& out);

 private:
  struct Queued {
    std::uint64_t event = 0;
    std::vector<std::uint64_t> deps;
    bool cancelled = false;
    std::function<void()> body;
    std::function<void()> on_ready;  // cleared once run
  };
  struct Stream {
    std::deque<Queued> queue;
    std::vector<std::uint64_t> next_deps;
    std::condition_variable work;  // new work, or the event it is blocked on has completed
    std::uint64_t blocked_on = 0;   // the dependency its worker waits for (0: none)
    Queued* current = nullptr;      // the operation its worker took from the queue, until it ended
    std::thread worker;
  };
  /// Blocks the host until `done` holds, woken by completions that may make it hold.
  template <typename Done>
  void host_wait(std::unique_lock<std::mutex>& lock, std::uint64_t event, Done done);
  /// After `event` completed (or an error was recorded): wakes exactly the threads that may proceed.
  void wake_after_locked(std::uint64_t event);
  /// Runs `q`'s on_ready if its dependencies have all completed and it has not run yet.
  void ready_locked(Queued& q);
  Stream& stream_locked(core::StreamId id);
  void worker_loop(core::StreamId id, Stream& s);
  void rethrow_locked();
  double now_s() const;

  std::chrono::steady_clock::time_point origin_;
  int compute_nice_ = 0;
  mutable std::mutex mutex_;
  std::condition_variable done_;  // the host: its event completed, every stream went idle, or an error was recorded
  std::multiset<std::uint64_t> host_waits_;  // events the host waits for (0: every stream idle)
  std::map<core::StreamId, std::unique_ptr<Stream>> streams_;
  std::set<std::uint64_t> pending_;  // events issued and not completed
  std::uint64_t next_event_ = 1;
  std::exception_ptr error_;
  bool stopping_ = false;
  std::vector<OpTiming> finished_;
};

}  // namespace moesys::exec::cpu
