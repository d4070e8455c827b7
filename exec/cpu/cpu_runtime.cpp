#include "exec/cpu/cpu_runtime.hpp"
#include "exec/common/runtime_checks.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "core/error.hpp"
#include "core/exec_timeout.hpp"
#include "exec/cpu/cpu_kernels.hpp"

namespace moesys::exec::cpu {

namespace {
double default_timeout_s() {
  return core::exec_timeout_s();
}

/// Moves `bytes` between memory and the file at `at` (a view's offset into its SSD buffer).
void io_all(bool write, int fd, void* mem, std::uint64_t at, std::uint64_t bytes, const std::string& path) {
  auto* p = static_cast<char*>(mem);
  std::uint64_t done = 0;
  while (done < bytes) {
    const ssize_t n = write ? ::pwrite(fd, p + done, bytes - done, static_cast<off_t>(at + done))
                            : ::pread(fd, p + done, bytes - done, static_cast<off_t>(at + done));
    if (n <= 0) throw core::RuntimeFailure("SSD tier: cannot " + std::string(write ? "write " : "read ") + path +
                                           ": " + std::strerror(errno));
    done += static_cast<std::uint64_t>(n);
  }
}
}  // namespace

CpuRuntime::CpuRuntime(core::ClusterSpec spec, CpuOptions options)
    : spec_(std::move(spec)), options_(std::move(options)),
      ledger_(spec_.node.gpu.hbm_bytes, spec_.node.host_memory.capacity_bytes / spec_.node.gpus,
              spec_.node.ssd.capacity_bytes / spec_.node.gpus) {
  require_thread_multiple();
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  check_ranks_fit(spec_, size_);
  if (options_.timeout_s <= 0) options_.timeout_s = default_timeout_s();
  if (options_.ssd_dir.empty())
    options_.ssd_dir = default_ssd_dir();
  comms_ = std::make_unique<Communicators>(spec_, rank_, options_.timeout_s);
  // A message's MPI tag is the program's tag (15 bits, what MPI guarantees) and its sequence number below it.
  tag_bits_ = std::min(16, mpi_tag_bits() - 15);
  if (tag_bits_ < 8)
    throw core::RuntimeFailure("MPI tags of " + std::to_string(tag_bits_ + 15) +
                               " bits are too small for the CPU runtime's message numbering (needs 23)");
  slots_ = std::make_unique<ComputeSlots>(
      options_.compute_slots < 0 ? default_compute_slots() : options_.compute_slots, options_.timeout_s);
  MPI_Barrier(MPI_COMM_WORLD);  // a common time origin for every rank's spans
  t0_ = std::chrono::steady_clock::now();
  engine_ = std::make_unique<StreamEngine>(t0_, options_.compute_nice);
}

CpuRuntime::~CpuRuntime() {
  try {
    synchronize();
  } catch (...) {  // a failed peer: nothing more to complete
  }
  engine_.reset();  // joins the workers: nothing uses the memory below any more
  release_deferred(true);
  for (auto& [id, a] : allocations_) release(a);
  for (auto& [capacity, block] : cached_blocks_) std::free(block);
  std::error_code ec;
  std::filesystem::remove(options_.ssd_dir, ec);  // only if empty: other runtimes of this process may share it
}

double CpuRuntime::now_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

core::Buffer CpuRuntime::alloc(core::Tier tier, std::uint64_t bytes, const std::string& tag) {
  release_deferred(false);
  ledger_.allocate(tier, bytes, tag);
  Allocation a;
  a.tag = tag;
  const std::uint64_t id = next_buffer_++;
  if (tier == core::Tier::ssd) {
    std::filesystem::create_directories(options_.ssd_dir);
    a.path = options_.ssd_dir + "/rank" + std::to_string(rank_) + "-buffer" + std::to_string(id);
    a.fd = ::open(a.path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (a.fd < 0 || ::ftruncate(a.fd, static_cast<off_t>(bytes)) != 0) {
      ledger_.release(tier, bytes, tag);
      throw core::RuntimeFailure("SSD tier: cannot create " + a.path + ": " + std::strerror(errno));
    }
  } else {
    const std::uint64_t rounded = (std::max<std::uint64_t>(bytes, 1) + 63) / 64 * 64;
    a.capacity = rounded;
    if (auto cached = cached_blocks_.find(rounded); cached != cached_blocks_.end()) {
      a.data = cached->second;
      cached_blocks_.erase(cached);
    } else {
      a.data = std::aligned_alloc(64, rounded);
    }
    if (!a.data) {
      ledger_.release(tier, bytes, tag);
      throw core::OutOfMemory("host allocation of " + std::to_string(bytes) + " bytes failed");
    }
    std::memset(a.data, 0, rounded);
  }
  allocations_[id] = a;
  return core::Buffer{id, tier, bytes, a.data};
}

void CpuRuntime::free(core::Buffer& buffer) {
  if (!buffer) return;
  auto it = allocations_.find(buffer.id);
  if (it == allocations_.end()) throw std::invalid_argument("free of an unknown buffer");
  ledger_.release(buffer.tier, buffer.bytes, it->second.tag);
  // Work issued before the free may still use the memory: release it once that work has completed, without
  // stalling the streams (as cudaFreeAsync orders a free after the stream's work).
  deferred_.emplace_back(engine_->issued_mark(), std::move(it->second));
  allocations_.erase(it);
  buffer = core::Buffer{};
  release_deferred(false);
}

void CpuRuntime::release(Allocation& a) {
  if (a.data) cached_blocks_.emplace(a.capacity, a.data);
  a.data = nullptr;
  if (a.fd >= 0) ::close(a.fd), ::unlink(a.path.c_str()), a.fd = -1;
}

void CpuRuntime::release_deferred(bool all) {
  if (deferred_.empty()) return;
  const std::uint64_t done = all ? UINT64_MAX : engine_->completed_below();
  auto keep = deferred_.begin();
  for (auto& d : deferred_) {
    if (d.first <= done)
      release(d.second);
    else
      *keep++ = std::move(d);
  }
  deferred_.erase(keep, deferred_.end());
}

core::Event CpuRuntime::compute(core::StreamId stream, const core::Kernel& kernel, std::string_view name) {
  OpSpec op;
  op.kind = core::SpanKind::compute;
  op.name = std::string(name);
  std::visit(
      [&](const auto& k) {
        using K = std::decay_t<decltype(k)>;
        if constexpr (std::is_same_v<K, core::TensorOp> || std::is_same_v<K, core::ElementwiseOp>) {
          op.flop = k.flop, op.bytes = k.bytes_read + k.bytes_written;
        } else {
          op.flop = k.flop();
        }
      },
      kernel);
  // The kernel joins the machine's queue for a slot when it becomes ready, as a GPU queues it for its execution
  // units, not when its worker next gets a core (ComputeSlots::Ticket); the slot is returned when the body ends or
  // is dropped unrun.
  auto ticket = std::make_shared<ComputeSlots::Ticket>(*slots_);
  op.on_ready = [ticket] { ticket->take(); };
  op.body = [kernel, ticket]() mutable {
    ticket->await_turn();
    run_kernel(kernel);
    ticket.reset();
  };
  return issue(stream, std::move(op));
}

core::Event CpuRuntime::copy(core::StreamId stream, const core::Buffer& dst, const core::Buffer& src,
                             std::uint64_t bytes) {
  if (bytes > dst.bytes || bytes > src.bytes)
    throw std::invalid_argument("copy of " + std::to_string(bytes) + " bytes exceeds a buffer (src " +
                                std::to_string(src.bytes) + ", dst " + std::to_string(dst.bytes) + ")");
  const auto& s = allocations_.at(src.id);
  const auto& d = allocations_.at(dst.id);
  if (s.fd >= 0 && d.fd >= 0) throw std::invalid_argument("copy between two SSD buffers is not supported");
  OpSpec op;
  op.kind = core::SpanKind::copy;
  op.name = std::string("copy ") + core::to_string(src.tier) + "->" + core::to_string(dst.tier);
  op.bytes = bytes;
  op.body = [sfd = s.fd, spath = s.path, dfd = d.fd, dpath = d.path, dst = dst.data, src = src.data, bytes,
             soff = src.offset, doff = dst.offset] {
    if (sfd >= 0) return io_all(false, sfd, dst, soff, bytes, spath);
    if (dfd >= 0) return io_all(true, dfd, src, doff, bytes, dpath);
    std::memmove(dst, src, bytes);
  };
  return issue(stream, std::move(op));
}

core::Event CpuRuntime::issue(core::StreamId stream, OpSpec op) {
  const core::Event e = engine_->submit(stream, std::move(op.body), std::move(op.on_ready));
  const double t = now_s();
  unresolved_.emplace(e.id, spans_.size());
  spans_.push_back({rank_, core::stream_name(stream), op.kind, std::move(op.name), t, t, op.bytes, op.flop});
  if (unresolved_.size() > 8192) resolve_spans();  // keeps the timings waiting in the engine few in long runs
  return e;
}

void CpuRuntime::resolve_spans() const {
  timings_.clear();
  engine_->take_timings(timings_);
  for (const OpTiming& t : timings_) {
    auto it = unresolved_.find(t.event);
    if (it == unresolved_.end()) continue;  // its span was cleared
    spans_[it->second].start_s = t.start_s, spans_[it->second].end_s = t.end_s;
    unresolved_.erase(it);
  }
}

void CpuRuntime::wait(core::Event event) {
  engine_->wait(event);
  release_deferred(false);
}

void CpuRuntime::stream_wait(core::StreamId stream, core::Event event) { engine_->stream_wait(stream, event); }

void CpuRuntime::synchronize() {
  engine_->synchronize();
  release_deferred(false);
}

const std::vector<core::Span>& CpuRuntime::spans() const {
  resolve_spans();
  return spans_;
}

double CpuRuntime::stream_cpu_s(core::StreamId stream) const { return engine_->worker_cpu_s(stream); }

void CpuRuntime::clear_spans() {
  spans_.clear();
  unresolved_.clear();
}

void CpuRuntime::begin_phase(std::string_view name) { open_phases_.emplace_back(std::string(name), now_s()); }

void CpuRuntime::end_phase() {
  if (open_phases_.empty()) return;
  auto [name, start] = open_phases_.back();
  open_phases_.pop_back();
  spans_.push_back({rank_, "host", core::SpanKind::phase, name, start, now_s(), 0, 0});
}

}  // namespace moesys::exec::cpu
