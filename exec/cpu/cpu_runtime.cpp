#include "exec/cpu/cpu_runtime.hpp"
#include "exec/common/runtime_checks.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <stdexcept>

#include "core/error.hpp"
#include "exec/cpu/cpu_kernels.hpp"

namespace moesys::exec::cpu {

namespace {
enum Opcode { kAllReduce = 1, kReduceScatter, kAllGather, kAllToAll };

double default_timeout_s() {
  if (const char* env = std::getenv("MOESYS_EXEC_TIMEOUT_S")) return std::atof(env);
  return 300;
}

int as_int(std::uint64_t v, const char* what) {
  if (v > static_cast<std::uint64_t>(INT32_MAX)) throw std::invalid_argument(std::string(what) + ": over 2 GiB");
  return static_cast<int>(v);
}

void io_all(bool write, int fd, void* mem, std::uint64_t bytes, const std::string& path) {
  auto* p = static_cast<char*>(mem);
  std::uint64_t done = 0;
  while (done < bytes) {
    const ssize_t n = write ? ::pwrite(fd, p + done, bytes - done, static_cast<off_t>(done))
                            : ::pread(fd, p + done, bytes - done, static_cast<off_t>(done));
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
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  check_ranks_fit(spec_, size_);
  if (options_.timeout_s <= 0) options_.timeout_s = default_timeout_s();
  if (options_.ssd_dir.empty())
    options_.ssd_dir = default_ssd_dir();
  comms_ = std::make_unique<Communicators>(spec_, rank_);
  MPI_Barrier(MPI_COMM_WORLD);  // a common time origin for every rank's spans
  t0_ = std::chrono::steady_clock::now();
}

CpuRuntime::~CpuRuntime() {
  try {
    synchronize();
  } catch (...) {  // a failed peer: nothing more to complete
  }
  for (auto& [id, a] : allocations_) {
    std::free(a.data);
    if (a.fd >= 0) ::close(a.fd), ::unlink(a.path.c_str());
  }
  std::error_code ec;
  std::filesystem::remove(options_.ssd_dir, ec);  // only if empty: other runtimes of this process may share it
}

double CpuRuntime::now_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

core::Buffer CpuRuntime::alloc(core::Tier tier, std::uint64_t bytes, const std::string& tag) {
  ledger_.allocate(tier, bytes, tag);
  Allocation a;
  a.tag = tag;
  const std::uint64_t id = next_buffer_++;
  if (tier == core::Tier::ssd) {
    std::filesystem::create_directories(options_.ssd_dir);
    a.path = options_.ssd_dir + "/rank" + std::to_string(rank_) + "-buffer" + std::to_string(id);
    a.fd = ::open(a.path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (a.fd < 0 || ::ftruncate(a.fd, static_cast<off_t>(bytes)) != 0)
      throw core::RuntimeFailure("SSD tier: cannot create " + a.path + ": " + std::strerror(errno));
  } else {
    const std::uint64_t rounded = (std::max<std::uint64_t>(bytes, 1) + 63) / 64 * 64;
    a.data = std::aligned_alloc(64, rounded);
    if (!a.data) throw core::OutOfMemory("host allocation of " + std::to_string(bytes) + " bytes failed");
    std::memset(a.data, 0, rounded);
  }
  allocations_[id] = a;
  return core::Buffer{id, tier, bytes, a.data};
}

void CpuRuntime::free(core::Buffer& buffer) {
  if (!buffer) return;
  auto it = allocations_.find(buffer.id);
  if (it == allocations_.end()) throw std::invalid_argument("free of an unknown buffer");
  drain_stream(-1);
  std::free(it->second.data);
  if (it->second.fd >= 0) ::close(it->second.fd), ::unlink(it->second.path.c_str());
  ledger_.release(buffer.tier, buffer.bytes, it->second.tag);
  allocations_.erase(it);
  buffer = core::Buffer{};
}

template <typename Body>
core::Event CpuRuntime::run(core::StreamId stream, core::SpanKind kind, std::string name, std::uint64_t bytes,
                            double flop, Body&& body) {
  drain_stream(stream);
  const double start = now_s();
  body();
  spans_.push_back({rank_, core::stream_name(stream), kind, std::move(name), start, now_s(), bytes, flop});
  return core::Event{next_event_++};
}

void CpuRuntime::complete(std::uint64_t event) {
  auto it = pending_.find(event);
  if (it == pending_.end()) return;
  Pending p = std::move(it->second);
  pending_.erase(it);
  await_requests(&p.request, 1, options_.timeout_s, p.what);
  spans_[p.span].end_s = now_s();
}

void CpuRuntime::drain_stream(core::StreamId stream) {  // stream -1: every stream
  std::vector<std::uint64_t> events;
  for (const auto& [id, p] : pending_)
    if (stream < 0 || p.stream == stream) events.push_back(id);
  for (auto id : events) complete(id);
}

core::Event CpuRuntime::compute(core::StreamId stream, const core::Kernel& kernel, std::string_view name) {
  double flop = 0, bytes = 0;
  std::visit(
      [&](const auto& k) {
        using K = std::decay_t<decltype(k)>;
        if constexpr (std::is_same_v<K, core::TensorOp>) {
          flop = k.flop, bytes = static_cast<double>(k.bytes_read + k.bytes_written);
        } else if constexpr (std::is_same_v<K, core::ElementwiseOp>) {
          flop = k.flop, bytes = static_cast<double>(k.bytes_read + k.bytes_written);
        } else {
          flop = k.flop(), bytes = 0;
        }
      },
      kernel);
  return run(stream, core::SpanKind::compute, std::string(name), static_cast<std::uint64_t>(bytes), flop,
             [&] { run_kernel(kernel); });
}

core::Event CpuRuntime::copy(core::StreamId stream, const core::Buffer& dst, const core::Buffer& src,
                             std::uint64_t bytes) {
  if (bytes > dst.bytes || bytes > src.bytes)
    throw std::invalid_argument("copy of " + std::to_string(bytes) + " bytes exceeds a buffer (src " +
                                std::to_string(src.bytes) + ", dst " + std::to_string(dst.bytes) + ")");
  const auto& s = allocations_.at(src.id);
  const auto& d = allocations_.at(dst.id);
  std::string name = std::string("copy ") + core::to_string(src.tier) + "->" + core::to_string(dst.tier);
  return run(stream, core::SpanKind::copy, std::move(name), bytes, 0, [&] {
    if (s.fd >= 0 && d.fd >= 0) throw std::invalid_argument("copy between two SSD buffers is not supported");
    if (s.fd >= 0) return io_all(false, s.fd, dst.data, bytes, s.path);
    if (d.fd >= 0) return io_all(true, d.fd, src.data, bytes, d.path);
    std::memmove(dst.data, src.data, bytes);
  });
}

core::Event CpuRuntime::send(core::StreamId stream, int peer, const core::Buffer& buffer, std::uint64_t bytes,
                             int tag) {
  drain_stream(stream);
  Pending p;
  p.stream = stream;
  p.what = "send of " + std::to_string(bytes) + " bytes from rank " + std::to_string(rank_) + " to rank " +
           std::to_string(peer) + " (tag " + std::to_string(tag) + ")";
  if (MPI_Isend(buffer.data, as_int(bytes, "send"), MPI_BYTE, peer, tag, MPI_COMM_WORLD, &p.request) != MPI_SUCCESS)
    throw core::RuntimeFailure(p.what + " failed in MPI");
  p.span = spans_.size();
  spans_.push_back({rank_, core::stream_name(stream), core::SpanKind::comm, "send", now_s(), now_s(), bytes, 0});
  const std::uint64_t id = next_event_++;
  pending_[id] = std::move(p);
  return core::Event{id};
}

core::Event CpuRuntime::recv(core::StreamId stream, int peer, const core::Buffer& buffer, std::uint64_t bytes,
                             int tag) {
  drain_stream(stream);
  Pending p;
  p.stream = stream;
  p.what = "receive of " + std::to_string(bytes) + " bytes on rank " + std::to_string(rank_) + " from rank " +
           std::to_string(peer) + " (tag " + std::to_string(tag) + ")";
  if (MPI_Irecv(buffer.data, as_int(bytes, "recv"), MPI_BYTE, peer, tag, MPI_COMM_WORLD, &p.request) != MPI_SUCCESS)
    throw core::RuntimeFailure(p.what + " failed in MPI");
  p.span = spans_.size();
  spans_.push_back({rank_, core::stream_name(stream), core::SpanKind::comm, "recv", now_s(), now_s(), bytes, 0});
  const std::uint64_t id = next_event_++;
  pending_[id] = std::move(p);
  return core::Event{id};
}

GroupComms& CpuRuntime::collective_start(const core::Group& group, int opcode, std::uint64_t bytes, const char* what,
                                         std::string& label) {
  if (group.index_of(rank_) < 0)
    throw std::invalid_argument(std::string(what) + ": rank " + std::to_string(rank_) + " is not in the group");
  for (int r : group.ranks())
    if (r < 0 || r >= size_)
      throw core::InfeasibleError(std::string(what) + ": group [" + group.key() + "] names rank " + std::to_string(r) +
                                  " but the run has " + std::to_string(size_) + " ranks");
  const std::uint64_t seq = sequence_[group.key()]++;
  label = std::string(what) + " #" + std::to_string(seq) + " on group [" + group.key() + "] (rank " +
          std::to_string(rank_) + ")";
  GroupComms& c = comms_->get(group);
  if (options_.check_collectives && group.size() > 1) {
    // max over members of (x, -x) gives max and -min at once: equal on every member iff all agree.
    std::int64_t sig[6] = {opcode, static_cast<std::int64_t>(seq), static_cast<std::int64_t>(bytes)}, out[6];
    for (int i = 0; i < 3; ++i) sig[3 + i] = -sig[i];
    MPI_Request req;
    MPI_Iallreduce(sig, out, 6, MPI_INT64_T, MPI_MAX, c.comm, &req);
    await_requests(&req, 1, options_.timeout_s, label);
    for (int i = 0; i < 3; ++i)
      if (out[i] != -out[3 + i])
        throw core::RuntimeFailure(label + ": members disagree on the collective (operation, sequence number or size "
                                   "differ): ranks issued different sequences of collectives");
  }
  return c;
}

core::Event CpuRuntime::all_reduce(core::StreamId stream, const core::Group& group, const core::Buffer& buffer,
                                   std::uint64_t bytes, core::Dtype dtype, core::CollectiveAlgo) {
  if (dtype != core::Dtype::fp32) throw std::invalid_argument("all_reduce: the CPU runtime reduces fp32 only");
  return run(stream, core::SpanKind::collective, "all_reduce", bytes, 0, [&] {
    std::string label;
    GroupComms& c = collective_start(group, kAllReduce, bytes, "all_reduce", label);
    MPI_Request req;
    MPI_Iallreduce(MPI_IN_PLACE, buffer.data, as_int(bytes / 4, "all_reduce"), MPI_FLOAT, MPI_SUM, c.comm, &req);
    await_requests(&req, 1, options_.timeout_s, label);
  });
}

core::Event CpuRuntime::reduce_scatter(core::StreamId stream, const core::Group& group, const core::Buffer& send,
                                       const core::Buffer& recv, std::uint64_t bytes, core::Dtype dtype,
                                       core::CollectiveAlgo) {
  if (dtype != core::Dtype::fp32) throw std::invalid_argument("reduce_scatter: the CPU runtime reduces fp32 only");
  return run(stream, core::SpanKind::collective, "reduce_scatter", bytes, 0, [&] {
    std::string label;
    GroupComms& c = collective_start(group, kReduceScatter, bytes, "reduce_scatter", label);
    MPI_Request req;
    MPI_Ireduce_scatter_block(send.data, recv.data, as_int(bytes / 4 / group.size(), "reduce_scatter"), MPI_FLOAT,
                              MPI_SUM, c.comm, &req);
    await_requests(&req, 1, options_.timeout_s, label);
  });
}

core::Event CpuRuntime::all_gather(core::StreamId stream, const core::Group& group, const core::Buffer& send,
                                   const core::Buffer& recv, std::uint64_t bytes, core::CollectiveAlgo) {
  return run(stream, core::SpanKind::collective, "all_gather", bytes, 0, [&] {
    std::string label;
    GroupComms& c = collective_start(group, kAllGather, bytes, "all_gather", label);
    MPI_Request req;
    const int part = as_int(bytes / group.size(), "all_gather");
    MPI_Iallgather(send.data, part, MPI_BYTE, recv.data, part, MPI_BYTE, c.comm, &req);
    await_requests(&req, 1, options_.timeout_s, label);
  });
}

core::Event CpuRuntime::all_to_all(core::StreamId stream, const core::Group& group, const core::Buffer& send,
                                   const std::vector<std::uint64_t>& send_bytes, const core::Buffer& recv,
                                   const std::vector<std::uint64_t>& recv_bytes, core::CollectiveAlgo algo) {
  const auto n = static_cast<std::size_t>(group.size());
  const std::uint64_t total = check_all_to_all_sizes(group, send, send_bytes, recv, recv_bytes);
  const bool hier = algo == core::CollectiveAlgo::hierarchical;
  return run(stream, core::SpanKind::collective, hier ? "all_to_all/hierarchical" : "all_to_all/direct", total, 0,
             [&] {
               std::string label;
               GroupComms& c = collective_start(group, kAllToAll, 0, "all_to_all", label);
               if (hier && c.hierarchical_ok && c.nodes > 1 && c.per_node > 1)
                 return hierarchical_all_to_all(c, send, send_bytes, recv, recv_bytes, label);
               std::vector<int> sc(n), sd(n), rc(n), rd(n);
               for (std::size_t i = 0; i < n; ++i) {
                 sc[i] = as_int(send_bytes[i], "all_to_all"), rc[i] = as_int(recv_bytes[i], "all_to_all");
                 if (i) sd[i] = sd[i - 1] + sc[i - 1], rd[i] = rd[i - 1] + rc[i - 1];
               }
               MPI_Request req;
               MPI_Ialltoallv(send.data, sc.data(), sd.data(), MPI_BYTE, recv.data, rc.data(), rd.data(), MPI_BYTE,
                              c.comm, &req);
               await_requests(&req, 1, options_.timeout_s, label);
             });
}

void CpuRuntime::wait(core::Event event) { complete(event.id); }

void CpuRuntime::stream_wait(core::StreamId, core::Event event) { complete(event.id); }

void CpuRuntime::synchronize() { drain_stream(-1); }

void CpuRuntime::begin_phase(std::string_view name) { open_phases_.emplace_back(std::string(name), now_s()); }

void CpuRuntime::end_phase() {
  if (open_phases_.empty()) return;
  auto [name, start] = open_phases_.back();
  open_phases_.pop_back();
  spans_.push_back({rank_, "host", core::SpanKind::phase, name, start, now_s(), 0, 0});
}

}  // namespace moesys::exec::cpu
