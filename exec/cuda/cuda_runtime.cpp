// CudaRuntime: devices, memory tiers, streams, events, kernels, copies and spans. Collectives and
// point-to-point messages are in cuda_collectives.cpp, waits and the watchdog in cuda_sync.cpp.
#include "exec/cuda/cuda_runtime.hpp"
#include "exec/common/runtime_checks.hpp"

#include <cublas_v2.h>
#include <fcntl.h>
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <stdexcept>
#include <thread>

#include "core/exec_timeout.hpp"
#include "exec/cuda/cuda_check.hpp"
#include "exec/cuda/device_kernels.hpp"
#include "exec/cuda/kernels.cuh"
#include "exec/cuda/nccl_comms.hpp"

namespace moesys::exec::cuda {

namespace {

double default_timeout_s() {
  return core::exec_timeout_s();
}

// SSD transfers run as host functions on the copy's stream, so they stay ordered with the GPU work around them
// (e.g. an NVMe read that a later H2D copy of the same pinned buffer depends on). Errors cannot be thrown from
// there: they are recorded and raised by the next wait.
struct SsdTask {
  bool write = false;
  int fd = -1;
  char* mem = nullptr;
  std::uint64_t at = 0;  // the SSD view's offset into its file
  std::uint64_t bytes = 0;
  std::string path;
  std::shared_ptr<std::mutex> mutex;
  std::shared_ptr<std::string> error;
};

void CUDART_CB run_ssd_task(void* arg) {
  std::unique_ptr<SsdTask> t(static_cast<SsdTask*>(arg));
  std::uint64_t done = 0;
  while (done < t->bytes) {
    const ssize_t n = t->write ? ::pwrite(t->fd, t->mem + done, t->bytes - done, static_cast<off_t>(t->at + done))
                               : ::pread(t->fd, t->mem + done, t->bytes - done, static_cast<off_t>(t->at + done));
    if (n <= 0) {
      std::lock_guard<std::mutex> lock(*t->mutex);
      *t->error =
          "SSD tier: cannot " + std::string(t->write ? "write " : "read ") + t->path + ": " + std::strerror(errno);
      return;
    }
    done += static_cast<std::uint64_t>(n);
  }
}

}  // namespace

int cuda_device_count() {
  int n = 0;  // left unchanged by a failing call (no driver: error 35)
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

std::string cuda_device_summary() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return "no CUDA device: cudaGetDeviceCount returned " + std::to_string(int(e)) + " " + cuda_error_string(e);
  }
  if (n == 0) return "no CUDA device";
  std::string out = std::to_string(n) + " CUDA device(s):";
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) == cudaSuccess)
      out += " [" + std::to_string(i) + "] " + p.name + " sm_" + std::to_string(p.major) + std::to_string(p.minor);
  }
  return out;
}

CudaRuntime::CudaRuntime(core::ClusterSpec spec, CudaOptions options)
    : spec_(std::move(spec)),
      options_(std::move(options)),
      ledger_(spec_.node.gpu.hbm_bytes, spec_.node.host_memory.capacity_bytes / spec_.node.gpus,
              spec_.node.ssd.capacity_bytes / spec_.node.gpus) {
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  check_ranks_fit(spec_, size_);
  if (options_.timeout_s <= 0) options_.timeout_s = default_timeout_s();
  if (options_.ssd_dir.empty())
    options_.ssd_dir = default_ssd_dir();
  // One rank per GPU: the rank's index among the ranks of its node picks the device.
  MPI_Comm local;
  int local_rank = 0, local_size = 1;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local);
  MPI_Comm_rank(local, &local_rank);
  MPI_Comm_size(local, &local_size);
  MPI_Comm_free(&local);
  const int count = cuda_device_count();
  if (count == 0)
    throw core::RuntimeFailure("CUDA runtime on rank " + std::to_string(rank_) + ": " + cuda_device_summary());
  device_ = options_.device >= 0 ? options_.device : local_rank;
  if (device_ >= count)
    throw core::InfeasibleError("rank " + std::to_string(rank_) + " is local rank " + std::to_string(local_rank) +
                                " of " + std::to_string(local_size) + " on its node, which has " +
                                std::to_string(count) + " CUDA device(s): run one rank per GPU");
  MOESYS_CUDA_CHECK(cudaSetDevice(device_));
  MOESYS_CUDA_CHECK(cudaStreamCreateWithFlags(&alloc_stream_, cudaStreamNonBlocking));
  MOESYS_CUDA_CHECK(cudaMalloc(&status_, sizeof(int)));
  MOESYS_CUDA_CHECK(cudaMemset(status_, 0, sizeof(int)));
  nccl_ = std::make_unique<NcclComms>(spec_, rank_, size_, options_.timeout_s);
  MOESYS_CUDA_CHECK(cudaDeviceSynchronize());
  MPI_Barrier(MPI_COMM_WORLD);  // a common time origin for every rank's spans
  base_ = new_event();
  MOESYS_CUDA_CHECK(cudaEventRecord(base_.get(), cuda_stream(core::streams::kCompute)));
  MOESYS_CUDA_CHECK(cudaEventSynchronize(base_.get()));
  t0_ = std::chrono::steady_clock::now();
}

CudaRuntime::~CudaRuntime() {
  try {
    synchronize();
  } catch (...) {  // a failed collective or kernel: nothing more to complete
  }
  nccl_.reset();
  reclaim(true);
  empty_cache();
  for (auto& [id, a] : allocations_) {
    if (a.fd >= 0) ::close(a.fd), ::unlink(a.path.c_str());
    if (a.ptr) a.host ? cudaFreeHost(a.ptr) : cudaFree(a.ptr);
  }
  events_.clear(), pending_spans_.clear(), in_flight_.clear(), base_.reset();
  for (auto* e : event_pool_) cudaEventDestroy(e);
  for (auto& [id, h] : cublas_) cublasDestroy(h);
  for (auto& [id, s] : streams_) cudaStreamDestroy(s);
  if (alloc_stream_) cudaStreamDestroy(alloc_stream_);
  if (status_) cudaFree(status_);
  std::error_code ec;
  std::filesystem::remove(options_.ssd_dir, ec);  // only if empty: other runtimes of this process may share it
}

double CudaRuntime::now_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

// ---- memory ----

core::Buffer CudaRuntime::alloc(core::Tier tier, std::uint64_t bytes, const std::string& tag) {
  check_failed();
  ledger_.allocate(tier, bytes, tag);
  Allocation a;
  a.tag = tag;
  a.host = tier == core::Tier::dram;
  const std::uint64_t id = next_buffer_++;
  const std::size_t size = std::max<std::uint64_t>(bytes, 1);
  try {
    if (tier == core::Tier::ssd) {
      std::filesystem::create_directories(options_.ssd_dir);
      a.path = options_.ssd_dir + "/rank" + std::to_string(rank_) + "-buffer" + std::to_string(id);
      a.fd = ::open(a.path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
      if (a.fd < 0 || ::ftruncate(a.fd, static_cast<off_t>(bytes)) != 0)
        throw core::RuntimeFailure("SSD tier: cannot create " + a.path + ": " + std::strerror(errno));
    } else {
      reclaim(false);
      a.size = size;
      a.ptr = cached_block(a.host, size);
      auto allocate = [&] {
        return tier == core::Tier::hbm ? cudaMalloc(&a.ptr, size) : cudaHostAlloc(&a.ptr, size, cudaHostAllocPortable);
      };
      cudaError_t e = a.ptr ? cudaSuccess : allocate();
      if (e != cudaSuccess && (!cached_.empty() || !released_.empty())) {
        cudaGetLastError();  // out of memory with blocks held for reuse: give them back and try once more
        synchronize();
        empty_cache();
        e = allocate();
      }
      if (e != cudaSuccess) {
        cudaGetLastError();
        throw core::OutOfMemory(std::string(tier == core::Tier::hbm ? "cudaMalloc" : "cudaHostAlloc") + " of " +
                                std::to_string(bytes) + " bytes (tag " + tag + ") failed on rank " +
                                std::to_string(rank_) + ": " + cuda_error_string(e) + "; in use " +
                                std::to_string(ledger_.in_use_bytes(tier) - bytes) + " bytes");
      }
      // Zeroed like the CPU runtime's buffers, on a private stream so no other stream can race with it.
      MOESYS_CUDA_CHECK(cudaMemsetAsync(a.ptr, 0, size, alloc_stream_));
      MOESYS_CUDA_CHECK(cudaStreamSynchronize(alloc_stream_));
    }
  } catch (...) {
    if (a.fd >= 0) ::close(a.fd), ::unlink(a.path.c_str());
    if (a.ptr) a.host ? cudaFreeHost(a.ptr) : cudaFree(a.ptr);
    ledger_.release(tier, bytes, tag);
    throw;
  }
  allocations_[id] = a;
  return core::Buffer{id, tier, bytes, tier == core::Tier::dram ? a.ptr : nullptr};
}

void CudaRuntime::free(core::Buffer& buffer) {
  if (!buffer) return;
  auto it = allocations_.find(buffer.id);
  if (it == allocations_.end()) throw std::invalid_argument("free of an unknown buffer");
  Allocation& a = it->second;
  Released r{a, {}};
  if (failure_.empty()) {
    flush_point_to_point();  // a message still to be posted may read or write the buffer
    for (const auto& [id, stream] : streams_) {
      r.after.push_back(new_event());
      MOESYS_CUDA_CHECK(cudaEventRecord(r.after.back().get(), stream));
    }
  }
  released_.push_back(std::move(r));
  ledger_.release(buffer.tier, buffer.bytes, a.tag);
  allocations_.erase(it);
  buffer = core::Buffer{};
  reclaim(false);
}

void CudaRuntime::reclaim(bool all) {
  auto keep = released_.begin();
  for (auto& r : released_) {
    bool passed = true;
    for (const EventPtr& e : r.after) {
      if (all) break;
      const cudaError_t q = cudaEventQuery(e.get());
      if (q == cudaErrorNotReady) {
        passed = false;
        break;
      }
      if (q != cudaSuccess) fail("an operation failed on the GPU: " + cuda_error_string(q));
    }
    if (!passed) {
      *keep++ = std::move(r);
      continue;
    }
    Allocation& a = r.allocation;
    if (a.fd >= 0) ::close(a.fd), ::unlink(a.path.c_str());
    if (a.ptr) cached_.emplace(std::make_pair(a.host, a.size), a.ptr);
  }
  released_.erase(keep, released_.end());
}

void* CudaRuntime::cached_block(bool host, std::size_t size) {
  // The most recently freed block of the size first (equal keys keep their insertion order), as caching
  // allocators do: its pages are the likeliest to be warm, and a free-then-allocate gets its own block back.
  const auto [first, last] = cached_.equal_range(std::make_pair(host, size));
  if (first == last) return nullptr;
  const auto it = std::prev(last);
  void* block = it->second;
  cached_.erase(it);
  return block;
}

void CudaRuntime::empty_cache() {
  for (auto& [key, block] : cached_) key.first ? cudaFreeHost(block) : cudaFree(block);
  cached_.clear();
}

void* CudaRuntime::address(const core::Buffer& buffer) const {
  auto it = allocations_.find(buffer.id);
  if (it == allocations_.end())
    throw std::invalid_argument("buffer " + std::to_string(buffer.id) + " was not allocated by this CUDA runtime");
  if (it->second.fd >= 0) throw std::invalid_argument("an SSD-tier buffer cannot be a kernel operand");
  return static_cast<char*>(it->second.ptr) + buffer.offset;
}

// ---- streams, events, spans ----

cudaStream_t CudaRuntime::cuda_stream(core::StreamId id) {
  auto it = streams_.find(id);
  if (it != streams_.end()) return it->second;
  int least = 0, greatest = 0;
  MOESYS_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  // Communication streams get the higher priority: an all-to-all that waits behind queued GEMMs delays every rank.
  const bool comm = id == core::streams::kComm || id == core::streams::kComm2;
  cudaStream_t s = nullptr;
  MOESYS_CUDA_CHECK(cudaStreamCreateWithPriority(&s, cudaStreamNonBlocking, comm ? greatest : least));
  return streams_[id] = s;
}

cublasContext* CudaRuntime::cublas(core::StreamId id) {
  // One handle per stream: a handle's workspace must not be shared by kernels running concurrently.
  auto it = cublas_.find(id);
  if (it != cublas_.end()) return it->second;
  cublasHandle_t h = nullptr;
  MOESYS_CUBLAS_CHECK(cublasCreate(&h));
  MOESYS_CUBLAS_CHECK(cublasSetStream(h, cuda_stream(id)));
  return cublas_[id] = h;
}

CudaRuntime::EventPtr CudaRuntime::new_event() {
  cudaEvent_t e = nullptr;
  if (!event_pool_.empty()) {
    e = event_pool_.back();
    event_pool_.pop_back();
  } else {
    MOESYS_CUDA_CHECK(cudaEventCreateWithFlags(&e, options_.trace ? cudaEventDefault : cudaEventDisableTiming));
  }
  return EventPtr(e, [this](CUevent_st* ev) { event_pool_.push_back(ev); });
}

template <typename Body>
core::Event CudaRuntime::issue(core::StreamId stream, core::SpanKind kind, std::string name, std::uint64_t bytes,
                               double flop, Body&& body) {
  check_failed();
  if (has_point_to_point(stream, 0)) flush_point_to_point();  // messages issued earlier on this stream go first
  const cudaStream_t s = cuda_stream(stream);
  EventPtr start;
  if (options_.trace) {
    start = new_event();
    MOESYS_CUDA_CHECK(cudaEventRecord(start.get(), s));
  }
  body(s);
  return track(stream, kind, std::move(name), bytes, flop, start);
}

core::Event CudaRuntime::track(core::StreamId stream, core::SpanKind kind, std::string name, std::uint64_t bytes,
                               double flop, const EventPtr& start, ncclComm* comm, const std::string& what,
                               std::uint64_t id) {
  EventPtr end = new_event();
  MOESYS_CUDA_CHECK(cudaEventRecord(end.get(), cuda_stream(stream)));
  if (id == 0) id = next_event_++;
  events_[id] = end;
  if (comm)
    in_flight_.push_back(
        {end, comm, what,
         std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                std::chrono::duration<double>(options_.timeout_s))});
  if (options_.trace) {
    const double t = now_s();  // until resolved from the events
    spans_.push_back({rank_, core::stream_name(stream), kind, std::move(name), t, t, bytes, flop});
    pending_spans_.push_back({spans_.size() - 1, start, end});
  }
  sweep_events();
  return core::Event{id};
}

void CudaRuntime::sweep_events() {
  // Completed events are forgotten (an unknown event id is complete), so the map stays small in long runs.
  if (events_.size() > 4096)
    std::erase_if(events_, [](const auto& kv) { return cudaEventQuery(kv.second.get()) == cudaSuccess; });
  if (pending_spans_.size() > 8192) resolve_spans();
}

void CudaRuntime::resolve_spans() const {
  // GPU times reach the host clock through one origin, taken when the host saw the origin event complete: later
  // than the event by the wake-up latency (1-2 us on an H200). A span must not end after the host saw it complete,
  // so its end is bounded by the moment its completion is seen here.
  std::erase_if(pending_spans_, [this](const PendingSpan& p) {
    if (cudaEventQuery(p.end.get()) != cudaSuccess) return false;
    const double now = now_s();
    float start_ms = 0, end_ms = 0;
    if (cudaEventElapsedTime(&start_ms, base_.get(), p.start.get()) != cudaSuccess ||
        cudaEventElapsedTime(&end_ms, base_.get(), p.end.get()) != cudaSuccess) {
      cudaGetLastError();
      return true;  // keep the host issue time
    }
    const double end = std::min(end_ms * 1e-3, now);
    spans_[p.index].start_s = std::min(start_ms * 1e-3, end), spans_[p.index].end_s = end;
    return true;
  });
}

const std::vector<core::Span>& CudaRuntime::spans() const {
  resolve_spans();
  return spans_;
}

void CudaRuntime::clear_spans() {
  resolve_spans();
  pending_spans_.clear();
  spans_.clear();
}

void CudaRuntime::begin_phase(std::string_view name) {
  open_phases_.emplace_back(std::string(name), now_s());
}

void CudaRuntime::end_phase() {
  if (open_phases_.empty()) return;
  auto [name, start] = open_phases_.back();
  open_phases_.pop_back();
  spans_.push_back({rank_, "host", core::SpanKind::phase, name, start, now_s(), 0, 0});
}

// ---- kernels and copies ----

core::Event CudaRuntime::compute(core::StreamId stream, const core::Kernel& kernel, std::string_view name) {
  double flop = 0, bytes = 0;
  std::visit(
      [&](const auto& k) {
        using K = std::decay_t<decltype(k)>;
        if constexpr (std::is_same_v<K, core::TensorOp> || std::is_same_v<K, core::ElementwiseOp>) {
          flop = k.flop, bytes = static_cast<double>(k.bytes_read + k.bytes_written);
        } else {
          flop = k.flop();
        }
      },
      kernel);
  return issue(stream, core::SpanKind::compute, std::string(name), static_cast<std::uint64_t>(bytes), flop,
               [&](cudaStream_t s) {
                 KernelContext ctx;
                 ctx.stream = s, ctx.cublas = cublas(stream), ctx.status = status_;
                 ctx.allow_tf32 = options_.allow_tf32;
                 ctx.address = [this](const core::Buffer& b) { return address(b); };
                 run_device_kernel(kernel, ctx);
               });
}

core::Event CudaRuntime::copy(core::StreamId stream, const core::Buffer& dst, const core::Buffer& src,
                              std::uint64_t bytes) {
  if (bytes > dst.bytes || bytes > src.bytes)
    throw std::invalid_argument("copy of " + std::to_string(bytes) + " bytes exceeds a buffer (src " +
                                std::to_string(src.bytes) + ", dst " + std::to_string(dst.bytes) + ")");
  const auto& s = allocations_.at(src.id);
  const auto& d = allocations_.at(dst.id);
  if (s.fd >= 0 || d.fd >= 0) {
    if (s.fd >= 0 && d.fd >= 0) throw std::invalid_argument("copy between two SSD buffers is not supported");
    if ((s.fd >= 0 ? dst.tier : src.tier) != core::Tier::dram)
      throw std::invalid_argument(
          "the SSD tier exchanges data with DRAM only (NVMe to pinned host memory); stage "
          "HBM copies through a DRAM buffer");
  }
  std::string name = std::string("copy ") + core::to_string(src.tier) + "->" + core::to_string(dst.tier);
  return issue(stream, core::SpanKind::copy, std::move(name), bytes, 0, [&](cudaStream_t st) {
    if (s.fd < 0 && d.fd < 0) {
      MOESYS_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(d.ptr) + dst.offset,
                                        static_cast<char*>(s.ptr) + src.offset, bytes, cudaMemcpyDefault, st));
      return;
    }
    auto task = std::make_unique<SsdTask>();
    task->write = d.fd >= 0, task->fd = d.fd >= 0 ? d.fd : s.fd;
    task->mem = d.fd >= 0 ? static_cast<char*>(s.ptr) + src.offset : static_cast<char*>(d.ptr) + dst.offset;
    task->at = d.fd >= 0 ? dst.offset : src.offset, task->bytes = bytes;
    task->path = d.fd >= 0 ? d.path : s.path, task->mutex = host_mutex_, task->error = host_error_;
    MOESYS_CUDA_CHECK(cudaLaunchHostFunc(st, run_ssd_task, task.get()));
    task.release();  // owned by run_ssd_task now
  });
}

}  // namespace moesys::exec::cuda
