#pragma once
// The CPU implementation of core::Runtime: one MPI process per rank, real buffers in every tier (HBM and DRAM
// are host memory with the capacities of the cluster description; the SSD tier is one real file per buffer),
// kernels through BLAS, collectives as MPI calls on per-group sub-communicators.
//
// Execution is synchronous in issue order: an operation runs when it is issued, so every event is complete when
// returned and stream_wait holds trivially. Point-to-point messages are the exception: send and recv post
// non-blocking MPI operations that complete when their event is waited on, when a later operation runs on the
// same stream, or at synchronize(), so that crossed send/recv pairs on two streams cannot deadlock.
// Every wait on MPI has a deadline: a collective that never completes ends in core::RuntimeFailure naming it.
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/runtime.hpp"
#include "exec/cpu/mpi_comms.hpp"

namespace moesys::exec::cpu {

struct CpuOptions {
  /// Longest wait for one collective or message (MOESYS_EXEC_TIMEOUT_S overrides the default of 300 s).
  double timeout_s = 0;
  /// Before each collective, members compare (operation, sequence number, size) in one small all-reduce, so
  /// that ranks that disagree on the sequence of collectives fail with a message instead of exchanging garbage.
  bool check_collectives = true;
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
                         const std::vector<std::uint64_t>& recv_bytes, core::CollectiveAlgo algo) override;

  void wait(core::Event event) override;
  void stream_wait(core::StreamId stream, core::Event event) override;
  void synchronize() override;

  void begin_phase(std::string_view name) override;
  void end_phase() override;
  const std::vector<core::Span>& spans() const override { return spans_; }
  void clear_spans() { spans_.clear(); }

private:
  struct Allocation {
    void* data = nullptr;
    int fd = -1;  // SSD tier
    std::string path, tag;
  };
  struct Pending {
    MPI_Request request = MPI_REQUEST_NULL;
    core::StreamId stream = 0;
    std::string what;
    std::size_t span = 0;  // index of its span, whose end is set on completion
  };
  template <typename Body>
  core::Event run(core::StreamId stream, core::SpanKind kind, std::string name, std::uint64_t bytes, double flop,
                  Body&& body);
  void complete(std::uint64_t event);
  void drain_stream(core::StreamId stream);
  GroupComms& collective_start(const core::Group& group, int opcode, std::uint64_t bytes, const char* what,
                               std::string& label);
  void hierarchical_all_to_all(GroupComms& c, const core::Buffer& send, const std::vector<std::uint64_t>& send_bytes,
                               const core::Buffer& recv, const std::vector<std::uint64_t>& recv_bytes,
                               const std::string& label);

  core::ClusterSpec spec_;
  CpuOptions options_;
  int rank_ = 0, size_ = 1;
  core::MemoryLedger ledger_;
  std::unique_ptr<Communicators> comms_;
  std::chrono::steady_clock::time_point t0_;
  std::map<std::uint64_t, Allocation> allocations_;
  std::map<std::uint64_t, Pending> pending_;
  std::map<std::string, std::uint64_t> sequence_;  // collectives issued per group
  std::vector<core::Span> spans_;
  std::vector<std::pair<std::string, double>> open_phases_;
  std::uint64_t next_event_ = 1, next_buffer_ = 1;
};

}  // namespace moesys::exec::cpu
