#pragma once
// The CPU implementation of core::Runtime: one MPI process per rank, real buffers in every tier (HBM and DRAM
// are host memory with the capacities of the cluster description; the SSD tier is one real file per buffer),
// kernels through BLAS, collectives as MPI calls on per-(group, stream) sub-communicators.
//
// Execution is asynchronous as on a GPU: every stream runs on its own worker thread, in issue order
// (stream_engine.hpp), so copies and collectives on one stream overlap kernels on another, and stream_wait orders
// work across streams like cudaStreamWaitEvent. Checks of the arguments (sizes, group membership, dtypes) run at
// issue and throw there; failures while running (MPI, SSD files, a kernel's bad input) come back to the host at
// its next wait, synchronize or issue, with their own exception type. A buffer that is freed is released once the
// work issued before the free has completed; the memory ledger counts it free at once, as in the simulator.
// Every wait on MPI has a deadline: a collective that never completes ends in core::RuntimeFailure naming it.
// Point-to-point messages match by (source, destination, tag) in issue order, whatever stream either side uses.
// MPI must provide MPI_THREAD_MULTIPLE (MpiSession asks for it).
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "core/runtime.hpp"
#include "exec/cpu/compute_slots.hpp"
#include "exec/cpu/mpi_comms.hpp"
#include "exec/cpu/stream_engine.hpp"

namespace moesys::exec::cpu {

/// An operation as the CPU runtime issues it: what its span says, and the body its stream's worker runs.
struct OpSpec {
  core::SpanKind kind = core::SpanKind::compute;
  std::string name;
  std::uint64_t bytes = 0;
  double flop = 0;
  std::function<void()> body;
  std::function<void()> on_ready;  // StreamEngine::submit's
};

struct CpuOptions {
  /// Longest wait for one collective or message (MOESYS_EXEC_TIMEOUT_S overrides the default of 300 s).
  double timeout_s = 0;
  /// Before each collective, members compare (operation, sequence number, size) in one small all-reduce, so
  /// that ranks that disagree on the sequence of collectives fail with a message instead of exchanging garbage.
  bool check_collectives = true;
  /// Nice value added to the compute stream's worker. On a GPU, communication and copies run on their own engines
  /// and SMs and never wait for a compute kernel's time slice; on CPU ranks that share cores they would (a tiny
  /// all-to-all took 5 ms beside GEMMs against 0.05 ms alone). A lower priority for compute lets the threads that
  /// progress messages and copies run as soon as they are ready. 0 leaves every stream at the process's priority.
  int compute_nice = 10;
  /// Kernels of this machine's ranks that run at once, each on a slot it holds to the end (compute_slots.hpp):
  /// -1 (default) cores / BLAS threads per kernel; 0 no slots (the operating system time-slices the kernels).
  int compute_slots = -1;
  /// Directory of the SSD tier's files; default: <temp dir>/moesys-ssd-<pid>. Removed at destruction.
  std::string ssd_dir;
};

class CpuRuntime final : public core::Runtime {
public:
  /// MPI must be initialised (MpiSession). Rank r plays GPU r of `spec`; the world must fit in the cluster.
  explicit CpuRuntime(core::ClusterSpec spec, CpuOptions options = {});
  ~CpuRuntime() override;

  int rank() const override { return rank_; }
  int world_size() const override { return size_; }
  const core::ClusterSpec& cluster() const override { return spec_; }
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

  void wait(core::Event event) override;
  void stream_wait(core::StreamId stream, core::Event event) override;
  void synchronize() override;

  void begin_phase(std::string_view name) override;
  void end_phase() override;
  /// One span per operation, in issue order, and the phases. As on the CUDA runtime, an operation's span exists
  /// from its issue; its start and end are those of its run on its stream's worker once it has completed (before,
  /// both are its issue time). Host thread only.
  const std::vector<core::Span>& spans() const override;
  void clear_spans();
  /// CPU time used so far by `stream`'s worker thread (machine_probe: what a waiting member's polling costs).
  double stream_cpu_s(core::StreamId stream) const;
  /// What this machine's compute slots did so far, over all its ranks (ComputeSlots::stats).
  ComputeSlots::Stats slot_stats() const { return slots_->stats(); }

private:
  struct Allocation {
    void* data = nullptr;
    std::uint64_t capacity = 0;  // bytes of the host block (rounded up)
    int fd = -1;  // SSD tier
    std::string path, tag;
  };
  /// A collective as its worker runs it: the communicators of its (group, stream) and what errors call it.
  struct CollectiveCall {
    GroupComms* comms = nullptr;
    int opcode = 0;
    std::int64_t sequence = 0;
    std::uint64_t bytes = 0;
    std::string label;
  };
  core::Event issue(core::StreamId stream, OpSpec op);
  void resolve_spans() const;
  CollectiveCall collective_call(core::StreamId stream, const core::Group& group, int opcode, std::uint64_t bytes,
                                 const char* what);
  void check_signature(const CollectiveCall& call) const;
  core::Event point_to_point(core::StreamId stream, bool sending, int peer, const core::Buffer& buffer,
                             std::uint64_t bytes, int tag);
  void hierarchical_all_to_all(GroupComms& c, const core::Buffer& send, const std::vector<std::uint64_t>& send_bytes,
                               const core::Buffer& recv, const std::vector<std::uint64_t>& recv_bytes,
                               const std::string& label) const;
  /// Returns a host block to the cache (an SSD file is removed).
  void release(Allocation& a);
  void release_deferred(bool all);

  core::ClusterSpec spec_;
  CpuOptions options_;
  int rank_ = 0, size_ = 1;
  core::MemoryLedger ledger_;
  std::unique_ptr<Communicators> comms_;
  std::chrono::steady_clock::time_point t0_;
  std::unique_ptr<ComputeSlots> slots_;   // before engine_: the workers that hold slots stop first
  std::unique_ptr<StreamEngine> engine_;  // after comms_: its workers stop before the communicators go
  std::map<std::uint64_t, Allocation> allocations_;
  // Freed host blocks by capacity, reused by alloc as a GPU framework's caching allocator reuses device memory:
  // a fresh block costs the host page faults on first touch and a trip through the system allocator, which would
  // stall the issuing thread every micro-batch (activations are allocated in forward and freed in backward).
  std::multimap<std::uint64_t, void*> cached_blocks_;
  std::vector<std::pair<std::uint64_t, Allocation>> deferred_;  // freed, released when the engine passes the mark
  std::map<std::pair<std::string, core::StreamId>, std::int64_t> sequence_;  // collectives per (group, stream)
  std::map<std::tuple<bool, int, int>, std::int64_t> messages_;  // (sending, peer, tag) -> messages issued
  int tag_bits_ = 0;  // MPI tag bits for the message sequence number, beside the program's 15-bit tag
  mutable std::vector<core::Span> spans_;
  mutable std::map<std::uint64_t, std::size_t> unresolved_;  // event -> its span, until the event's timing arrives
  mutable std::vector<OpTiming> timings_;                    // scratch of resolve_spans
  std::vector<std::pair<std::string, double>> open_phases_;
  std::uint64_t next_buffer_ = 1;
};

}  // namespace moesys::exec::cpu
