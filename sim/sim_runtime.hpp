#pragma once
// The SimGrid implementation of core::Runtime for one rank. Each stream is a SimGrid actor on the rank's GPU
// host that runs the stream's operations in order; the rank's own actor issues operations and waits on events.
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/runtime.hpp"
#include "sim/operand_cache.hpp"
#include "sim/progress_load.hpp"
#include "sim/sim_world.hpp"

namespace moesys::sim {

class SimRuntime final : public core::Runtime {
 public:
  /// `coalesce_kernels`: run back-to-back GPU kernels of a stream as one SimGrid execution where nothing observes
  /// the boundaries between them (SimOptions::coalesce_kernels); spans then cover such runs, not single kernels.
  SimRuntime(SimWorld& world, int rank, int world_size, bool coalesce_kernels = false);

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  const core::ClusterSpec& cluster() const override { return world_.spec(); }
  double now_s() const override;

  core::Buffer alloc(core::Tier tier, std::uint64_t bytes, const std::string& tag) override;
  void free(core::Buffer& buffer) override;
  const core::MemoryLedger& memory() const override { return ledger_; }

  core::Event compute(core::StreamId stream, const core::Kernel& kernel, std::string_view name) override;
  core::Event copy(core::StreamId stream, const core::Buffer& dst, const core::Buffer& src,
                   std::uint64_t bytes) override;
  core::Event send(core::StreamId stream, int peer, const core::Buffer& buffer, std::uint64_t bytes, int tag) override;
  core::Event recv(core::StreamId stream, int peer, const core::Buffer& buffer, std::uint64_t bytes, int tag) override;
  core::Event all_reduce(core::StreamId stream, const core::Group& group, const core::Buffer& buffer,
                         std::uint64_t bytes, core::Dtype dtype, core::CollectiveAlgo algo) override;
  core::Event reduce_scatter(core::StreamId stream, const core::Group& group, const core::Buffer& send,
                             const core::Buffer& recv, std::uint64_t bytes, core::Dtype dtype,
                             core::CollectiveAlgo algo) override;
  core::Event all_gather(core::StreamId stream, const core::Group& group, const core::Buffer& send,
                         const core::Buffer& recv, std::uint64_t bytes, core::CollectiveAlgo algo) override;
  core::Event all_to_all(core::StreamId stream, const core::Group& group, const core::Buffer& send,
                         const std::vector<std::uint64_t>& send_bytes, const core::Buffer& recv,
                         const std::vector<std::uint64_t>& recv_bytes, core::CollectiveAlgo algo,
                         const core::NodeTraffic& nodes = {}) override;

  /// A copy engine's copy of `bytes` from this GPU's memory into GPU `peer`'s on the same node (cudaMemcpyPeerAsync,
  /// what nvbandwidth's device-to-device tests time). Not part of the runtime contract: programs move data between
  /// GPUs with collectives; the calibration uses it to put nvbandwidth's copies on their own path.
  core::Event peer_copy(core::StreamId stream, int peer, std::uint64_t bytes);

  void wait(core::Event event) override;
  void stream_wait(core::StreamId stream, core::Event event) override;
  void synchronize() override;

  void begin_phase(std::string_view name) override;
  void end_phase() override;
  const std::vector<core::Span>& spans() const override { return spans_; }

 private:
  /// One operation waiting in a stream's queue; `body` does the work in the stream's actor.
  struct Op {
    std::uint64_t event = 0;
    std::vector<std::uint64_t> deps;
    core::SpanKind kind = core::SpanKind::compute;
    std::string name;
    std::uint64_t bytes = 0;
    double flop = 0;
    double gpu_work = -1;  // a kernel on the rank's GPU: its work (GPU speed units); -1 for any other operation
    double not_before = 0;  // the end of its issue on the host (Calibration::host_op_s): it starts no earlier
    /// A communication kernel on the rank's GPU (it holds SMs): with Calibration::comm_waits_behind_kernels it
    /// starts only once the kernels that run on the GPU's other streams and were issued before it have ended.
    bool holds_sms = false;
    /// A kernel of a CPU rank: the node's compute slots, which the stream's worker takes before the body runs
    /// (and the body releases).
    sg::sg4::Semaphore* slots = nullptr;
    std::function<void()> body;
    std::vector<Extent> written;  // a copy's or collective's output, out of the slots' caches once it has run
  };
  /// An actor that blocks until another actor makes its condition true: the waker releases its semaphore.
  /// SimGrid runs one actor at a time and switches only inside simcalls, so the condition, the registration and
  /// the block happen with no other actor in between and no wake-up can be lost; no mutex is needed.
  struct Waiter {
    sg::sg4::SemaphorePtr wake = sg::sg4::Semaphore::create(0);
    std::uint64_t until = 0;  // the event it waits for (when waiting for one)
  };
  /// Back-to-back GPU kernels of one stream run as one SimGrid execution (coalesce_kernels_). Concurrent
  /// executions share the GPU by max-min, and a stream runs one at a time, so a kernel followed at once by the
  /// next leaves every other execution's share as it was: the run ends when its last kernel would have. A run
  /// splits where an event inside it is waited for, ahead (an operation already issued depends on it) or late
  /// (a waiter arrives while the run executes: the execution is cancelled at its progress and restarted up to
  /// that event), so every waiter resumes when its kernel ends.
  struct KernelRun {
    std::vector<std::uint64_t> events;  // the kernels' events, in order
    std::vector<double> ends;           // cumulative work at the end of each kernel
    std::size_t next = 0;               // first kernel not yet marked done
    std::size_t stop = 0;               // last kernel of the execution in flight
    double done_work = 0;               // work done when the execution in flight started
    double exec_work = 0;               // that execution's work
    double cancelled_at = 0;            // progress when a waiter cancelled it
    bool cancelled = false;             // the execution in flight was cancelled at cancelled_at
    sg::sg4::ExecPtr exec;              // in flight; null between executions and once cancelled
  };
  /// Where an event lies for a waiter, relative to its stream's KernelRun.
  enum class RunPosition {
    ended,   // its kernel has ended within the execution in flight: now marked done
    inside,  // before the end of the execution in flight, which must stop there (KernelRun::cancelled_at set)
    after,   // at the end of the execution in flight or later, or not in the run
    moved,   // the run changed while its progress was read: look again
  };
  /// Relative tolerance on work when deciding that a kernel inside a run has ended.
  static constexpr double kWorkTolerance = 1e-12;
  struct Stream {
    core::StreamId id = 0;
    std::uint16_t index = 0;  // position in by_index_
    bool started = false;     // its actor runs
    std::deque<Op> queue;
    std::vector<std::uint64_t> next_deps;
    std::uint64_t last_issued = 0;  // operations of one stream complete in issue order,
    std::uint64_t last_done = 0;    // so an event e of this stream is done when last_done >= e
    Waiter worker;                  // the stream's actor
    bool worker_idle = false;       // blocked on an empty queue
    std::vector<Waiter*> waiters;   // actors blocked until an event of this stream completes
    KernelRun* running = nullptr;         // the coalesced kernels in execution, if any
    std::uint64_t kernel_in_flight = 0;   // the GPU kernel its actor runs now, outside a KernelRun (0: none)
    std::uint64_t exec_generation = 0;    // changes whenever the running execution starts or ends
  };

  /// The stream `id`, created on first use; its actor starts with its first operation.
  Stream& stream(core::StreamId id, bool start_actor);
  core::Event enqueue(core::StreamId stream, Op op);
  void stream_loop(Stream& s);
  /// Runs `first` and the kernels queued behind it that may join it (KernelRun); records one span for them.
  void run_kernels(Stream& s, Op first, double start);
  /// Locates `event` in `s`'s running KernelRun for a waiter, marking its kernels done if its progress has passed it.
  RunPosition locate_in_run(Stream& s, std::uint64_t event);
  bool done(std::uint64_t event) const;
  /// The first kernel of `s` not yet known to have ended, if `s` runs GPU kernels now (0: none). Inside a KernelRun
  /// it may have ended by the run's progress: waiting for it then returns at once and marks it done.
  std::uint64_t kernel_running_on(const Stream& s) const;
  /// Blocks `op`'s stream `s` until the GPU kernels that other streams of the rank run now and issued before `op`
  /// have ended (Calibration::comm_waits_behind_kernels); true if it had to block.
  bool wait_behind_kernels(const Op& op, Stream& s);
  /// Blocks the calling actor (`self` is its waiter) until `event` has completed.
  /// Blocks `self` until `event` has completed; true if it had to block.
  bool wait_for(std::uint64_t event, Waiter& self);
  /// Marks the next operation of `s` done and wakes exactly the actors waiting for it.
  void complete(Stream& s, std::uint64_t event);
  /// `written`: the buffer the operation writes on this rank (what it leaves in no compute slot's cache).
  core::Event collective(core::StreamId stream, CollectiveOp op, const core::Group& group, double bytes,
                         core::CollectiveAlgo algo, std::vector<double> row, std::uint64_t traced_bytes,
                         const core::Buffer& written);
  core::Event point_to_point(core::StreamId stream, int src, int dst, std::uint64_t bytes, int tag, bool sending,
                             const core::Buffer& written);
  /// The extents of a buffer that a copy or collective writes, where the node's slots keep caches
  /// (sim/operand_cache.hpp): the writer, not a kernel on a slot, holds those bytes afterwards (its first `bytes`
  /// bytes, all of it by default). Else empty.
  std::vector<Extent> written_extents(const core::Buffer& buffer, std::uint64_t bytes = ~std::uint64_t{0});
  /// A group as this rank uses it: its interned id and this rank's index in it (throws if not a member).
  struct GroupRef {
    core::Group group;  // shares the caller's members
    int id = 0;
    int index = 0;
    double comm_share = 0;  // of this rank's GPU, while a collective of the group runs (communication_share)
  };
  static constexpr std::size_t kGroupCacheSize = 64;
  static constexpr int kGroupSequence = -1;  // sequence_ key kind of a group's collective calls
  GroupRef group_ref(const core::Group& group, const char* what);
  /// The node's compute slots when this rank's kernels share cores with its communication (CPU ranks), else nullptr.
  sg::sg4::Host* progress_slots() const;
  /// The rank's GPU load, which its communication kernels add to (sim/progress_load.hpp); nullptr on CPU ranks.
  GpuLoad* progress_gpu();

  SimWorld& world_;
  int rank_, world_size_;
  core::MemoryLedger ledger_;
  std::map<core::StreamId, Stream> streams_;  // node-based: a stream's address is stable
  std::vector<Stream*> by_index_;             // streams in creation order
  std::vector<std::uint16_t> event_stream_;   // event id -> index of its stream (ids start at 1)
  std::vector<bool> event_awaited_;           // event id - 1 -> an operation of another stream depends on it
  bool coalesce_kernels_ = false;
  Waiter host_;                               // the rank's own actor
  double host_clock_ = 0;                     // when the host has issued everything so far (host_op_s > 0)
  std::uint64_t next_event_ = 1, next_buffer_ = 1;
  std::unordered_map<std::uint64_t, std::string> buffer_tags_;                    // live buffers -> their ledger tag
  std::vector<GroupRef> groups_;                                                  // the groups this rank used last
  std::unordered_map<RendezvousKey, std::uint64_t, RendezvousKeyHash> sequence_;  // per group / message triple
  std::vector<core::Span> spans_;
  GpuLoad gpu_load_;  // what communication takes from this rank's GPU while kernels run (unused on CPU ranks)
  std::vector<std::pair<std::string, double>> open_phases_;
};

}  // namespace moesys::sim
