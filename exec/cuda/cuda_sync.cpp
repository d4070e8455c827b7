// CudaRuntime: waiting without hanging. Host waits poll (cudaEventQuery / cudaStreamQuery) rather than block,
// and every poll runs the watchdog over the in-flight collectives: an NCCL asynchronous error or a passed deadline
// aborts the communicators (so the stuck NCCL kernels return) and ends the rank with a message naming the
// collective. Errors of SSD host functions and of kernels' bad-input flags surface here too.
#include <chrono>
#include <stdexcept>
#include <thread>

#include "exec/cuda/cuda_check.hpp"
#include "exec/cuda/cuda_runtime.hpp"
#include "exec/cuda/kernels.cuh"
#include "exec/cuda/nccl_comms.hpp"

namespace moesys::exec::cuda {

void CudaRuntime::check_failed() const {
  if (!failure_.empty()) throw core::RuntimeFailure(failure_);
}

void CudaRuntime::fail(const std::string& message) {
  failure_ = message;
  if (nccl_) nccl_->abort_all();  // lets the stuck NCCL kernels return; peers see the failure as theirs time out
  throw core::RuntimeFailure(message);
}

void CudaRuntime::watchdog() {
  {
    std::lock_guard<std::mutex> lock(*host_mutex_);
    if (!host_error_->empty()) {
      const std::string e = *host_error_;
      host_error_->clear();
      throw core::RuntimeFailure(e);
    }
  }
  const auto now = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < in_flight_.size();) {
    InFlight& f = in_flight_[i];
    const cudaError_t q = cudaEventQuery(f.done.get());
    if (q == cudaSuccess) {
      in_flight_.erase(in_flight_.begin() + std::ptrdiff_t(i));
      continue;
    }
    if (q != cudaErrorNotReady) fail(f.what + " failed on the GPU: " + cuda_error_string(q));
    ncclResult_t state = ncclSuccess;
    if (!nccl_->aborted() && ncclCommGetAsyncError(f.comm, &state) == ncclSuccess && state != ncclSuccess &&
        state != ncclInProgress)
      fail(f.what + " failed in NCCL: " + ncclGetErrorString(state) + ": " + nccl_error_text(f.comm, state));
    if (now > f.deadline)
      fail(f.what + " did not complete within " + std::to_string(static_cast<int>(options_.timeout_s)) +
           " s: a member never issued it (ranks disagree on the number or order of collectives) or a member died; "
           "NCCL communicators aborted");
    ++i;
  }
}

template <typename Done>
void CudaRuntime::block_until(Done&& done, const std::string& what) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  for (long spins = 0;; ++spins) {
    if (done()) return watchdog();  // also reports an SSD error of a completed host function
    watchdog();
    if (std::chrono::duration<double>(clock::now() - start).count() > options_.timeout_s)
      fail(what + " did not complete within " + std::to_string(static_cast<int>(options_.timeout_s)) + " s on rank " +
           std::to_string(rank_));
    // Spin briefly for latency, then yield the core (several ranks may share a node's cores).
    if (spins > 200) std::this_thread::sleep_for(std::chrono::microseconds(spins > 20000 ? 500 : 20));
  }
}

void CudaRuntime::wait(core::Event event) {
  check_failed();
  if (has_point_to_point(-1, event.id)) flush_point_to_point();
  auto it = events_.find(event.id);
  if (it == events_.end()) {  // forgotten: complete
    watchdog();
    if (options_.trace) resolve_spans();
    return;
  }
  const EventPtr e = it->second;
  block_until(
      [&] {
        const cudaError_t q = cudaEventQuery(e.get());
        if (q == cudaErrorNotReady) return false;
        if (q != cudaSuccess) fail("an operation failed on the GPU: " + cuda_error_string(q));
        return true;
      },
      "wait for event " + std::to_string(event.id));
  if (options_.trace) resolve_spans();  // now: the spans that ended end no later than this wait's return
}

void CudaRuntime::stream_wait(core::StreamId stream, core::Event event) {
  check_failed();
  if (has_point_to_point(-1, event.id)) flush_point_to_point();
  auto it = events_.find(event.id);
  if (it == events_.end()) return;
  MOESYS_CUDA_CHECK(cudaStreamWaitEvent(cuda_stream(stream), it->second.get(), 0));
}

void CudaRuntime::synchronize() {
  check_failed();
  flush_point_to_point();
  block_until(
      [&] {
        for (const auto& [id, s] : streams_) {
          const cudaError_t q = cudaStreamQuery(s);
          if (q == cudaErrorNotReady) return false;
          if (q != cudaSuccess) fail("an operation failed on the GPU: " + cuda_error_string(q));
        }
        return true;
      },
      "synchronize");
  in_flight_.clear();
  reclaim(true);
  check_status();
  resolve_spans();
}

void CudaRuntime::check_status() {
  int flags = 0;
  MOESYS_CUDA_CHECK(cudaMemcpy(&flags, status_, sizeof flags, cudaMemcpyDeviceToHost));
  if (flags == 0) return;
  MOESYS_CUDA_CHECK(cudaMemset(status_, 0, sizeof flags));
  if (flags & kernels::kBadTokenId) throw std::invalid_argument("cuda kernel: embedding: token id out of range");
  throw std::invalid_argument("cuda kernel: softmax_xent: target out of range");
}

}  // namespace moesys::exec::cuda
