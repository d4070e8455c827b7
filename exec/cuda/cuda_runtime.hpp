#pragma once
// The CUDA implementation of core::Runtime: one MPI process per rank and one GPU per rank. Same semantics as the
// CPU runtime (exec/cpu/cpu_runtime.hpp), but asynchronous for real:
// - HBM buffers are cudaMalloc'd device memory (Buffer::data is nullptr: the host cannot address it; use
//   upload / download of model/tensors.hpp), the DRAM tier is pinned host memory (cudaHostAlloc, so copies
//   run at full PCIe rate and overlap compute), the SSD tier is one real file per buffer. Every tier is checked
//   against the cluster description's capacities by the shared MemoryLedger.
// - Streams are CUDA streams created on first use; events are CUDA events; stream_wait is cudaStreamWaitEvent.
// - GEMMs run on cuBLAS (fp32, TF32, bf16 and fp16 with fp32 accumulation); the TensorOp kinds run on the kernels
//   of kernels_moe.cu / kernels_dense.cu, which mirror exec/cpu/cpu_kernels.cpp.
// - Collectives are NCCL calls on per-group communicators bootstrapped over MPI (nccl_comms.hpp); the
//   hierarchical all-to-all uses intra-node and same-local-rank communicators.
// - Nothing waits forever: host waits poll (cudaEventQuery) with a deadline, and a watchdog checks every
//   in-flight collective (cudaEventQuery, ncclCommGetAsyncError) and aborts the communicators when one exceeds the
//   deadline, so ranks that disagree on the collectives end with core::RuntimeFailure naming the collective.
#include <cuda_runtime_api.h>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/runtime.hpp"

struct cublasContext;
struct CUevent_st;
struct ncclComm;

namespace moesys::exec::cuda {

class NcclComms;

struct CudaOptions {
  /// Longest wait for one collective or message (MOESYS_EXEC_TIMEOUT_S overrides the default of 300 s).
  double timeout_s = 0;
  /// Before each collective, members compare (operation, sequence number, size) over MPI, as on the CPU runtime.
  bool check_collectives = true;
  /// Directory of the SSD tier's files; default: <temp dir>/moesys-ssd-<pid>.
  std::string ssd_dir;
  /// CUDA device of this rank; -1: the local rank on its node (one rank per GPU).
  int device = -1;
  /// Let fp32 GEMMs use TF32 tensor cores (CUBLAS_COMPUTE_32F_FAST_TF32); off: exact fp32 like the CPU runtime.
  bool allow_tf32 = false;
  /// Record every operation as a span timed by CUDA events (two events per operation).
  bool trace = true;
};

/// Usable CUDA devices: 0 where there is none or no driver (cudaGetDeviceCount fails, e.g. error 35).
int cuda_device_count();
/// One line describing why there is no device, or the devices there are.
std::string cuda_device_summary();

class CudaRuntime final : public core::Runtime {
 public:
  /// MPI must be initialised (exec/cpu MpiSession). Rank r plays GPU r of `spec` and uses one local CUDA device.
  explicit CudaRuntime(core::ClusterSpec spec, CudaOptions options = {});
  ~CudaRuntime() override;
  CudaRuntime(const CudaRuntime&) = delete;
  CudaRuntime& operator=(const CudaRuntime&) = delete;

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
  const std::vector<core::Span>& spans() const override;
  void clear_spans();

  // ---- CUDA specifics (benchmarks, tests) ----
  int device() const { return device_; }
  /// The address kernels use for a buffer: device memory for HBM, the pinned host address for DRAM.
  void* address(const core::Buffer& buffer) const;
  cudaStream_t cuda_stream(core::StreamId stream);

 private:
  using EventPtr = std::shared_ptr<CUevent_st>;
  struct Allocation {
    void* ptr = nullptr;
    std::size_t size = 0;  // bytes of the block (device or pinned host)
    bool host = false;  // pinned host memory (DRAM tier)
    int fd = -1;        // SSD tier
    std::string path, tag;
  };
  /// A freed allocation that work already issued may still use: released once every stream has passed `after`.
  struct Released {
    Allocation allocation;
    std::vector<EventPtr> after;  // one per stream, recorded at the free
  };
  struct PendingSpan {
    std::size_t index = 0;
    EventPtr start, end;
  };
  struct PointToPoint {  // posted together at the next wait, so that crossed send/recv pairs cannot deadlock
    bool is_send = true;
    int peer = 0;
    void* ptr = nullptr;
    std::uint64_t bytes = 0;
    core::StreamId stream = 0;
    std::uint64_t event = 0;
    std::size_t span = 0;
  };
  struct InFlight {  // a collective or message the watchdog follows until its event completes
    EventPtr done;
    ncclComm* comm = nullptr;
    std::string what;
    std::chrono::steady_clock::time_point deadline;
  };

  EventPtr new_event();
  template <typename Body>
  core::Event issue(core::StreamId stream, core::SpanKind kind, std::string name, std::uint64_t bytes, double flop,
                    Body&& body);
  /// Records the end of an operation on `stream`: its event, its span, and (with `comm`) a watchdog entry.
  core::Event track(core::StreamId stream, core::SpanKind kind, std::string name, std::uint64_t bytes, double flop,
                    const EventPtr& start, ncclComm* comm = nullptr, const std::string& what = {},
                    std::uint64_t id = 0);
  template <typename Body>
  core::Event collective(core::StreamId stream, std::string name, std::uint64_t bytes, ncclComm* comm,
                         const std::string& label, Body&& body);
  void settle(ncclComm* comm, const std::string& what);
  void check_failed() const;
  [[noreturn]] void fail(const std::string& message);
  void watchdog();
  template <typename Done>
  void block_until(Done&& done, const std::string& what);
  void flush_point_to_point();
  /// Moves freed allocations whose streams have passed them into the block cache (all: after a synchronize).
  void reclaim(bool all);
  /// A cached block of exactly `size` bytes (device or pinned host), or nullptr.
  void* cached_block(bool host, std::size_t size);
  /// Returns every cached block to CUDA (before retrying an allocation that failed, and at the end).
  void empty_cache();
  bool has_point_to_point(core::StreamId stream, std::uint64_t event) const;
  void resolve_spans() const;
  void sweep_events();
  void check_status();
  cublasContext* cublas(core::StreamId stream);
  std::string collective_start(const core::Group& group, int opcode, std::uint64_t bytes, const char* what);
  void hierarchical_all_to_all(core::StreamId stream, const core::Group& group, const core::Buffer& send,
                               const std::vector<std::uint64_t>& send_bytes, const core::Buffer& recv,
                               const std::vector<std::uint64_t>& recv_bytes, const std::string& label);

  core::ClusterSpec spec_;
  CudaOptions options_;
  int rank_ = 0, size_ = 1, device_ = 0;
  core::MemoryLedger ledger_;
  std::unique_ptr<NcclComms> nccl_;
  std::chrono::steady_clock::time_point t0_;
  std::map<std::uint64_t, Allocation> allocations_;
  // Freeing does not synchronise the device (cudaFree would, and so would waiting for the buffer's last use):
  // the block waits in released_ until the streams pass the free, then goes to the cache that alloc reuses, as
  // a framework's caching allocator does. Activations are allocated and freed every micro-batch.
  std::vector<Released> released_;
  std::multimap<std::pair<bool, std::size_t>, void*> cached_;  // (pinned host?, size) -> block
  std::map<core::StreamId, cudaStream_t> streams_;
  std::map<core::StreamId, cublasContext*> cublas_;
  std::vector<CUevent_st*> event_pool_;
  std::unordered_map<std::uint64_t, EventPtr> events_;
  EventPtr base_;  // time origin of the spans
  mutable std::vector<core::Span> spans_;
  mutable std::vector<PendingSpan> pending_spans_;
  std::vector<PointToPoint> p2p_;
  std::vector<InFlight> in_flight_;
  std::map<std::string, std::uint64_t> sequence_;
  std::vector<std::pair<std::string, double>> open_phases_;
  cudaStream_t alloc_stream_ = nullptr;  // zero-fills new buffers, synchronised at once
  int* status_ = nullptr;                // device word the kernels flag bad input in (kernels.cuh StatusBit)
  std::string failure_;                  // set once a collective failed: every later call throws it
  std::shared_ptr<std::mutex> host_mutex_ = std::make_shared<std::mutex>();
  std::shared_ptr<std::string> host_error_ = std::make_shared<std::string>();  // from SSD host functions
  std::uint64_t next_event_ = 1, next_buffer_ = 1;
};

}  // namespace moesys::exec::cuda
