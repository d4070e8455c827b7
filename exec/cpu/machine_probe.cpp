#include "exec/cpu/machine_probe.hpp"

#include <cblas.h>
#include <fcntl.h>
#include <mpi.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/kernel_class.hpp"
#include "core/units.hpp"
#include "exec/cpu/compute_slots.hpp"
#include "exec/cpu/cpu_kernels.hpp"
#include "exec/cpu/cpu_runtime.hpp"
#include "exec/cpu/mpi_comms.hpp"
#include "model/ops.hpp"

namespace moesys::exec::cpu {

namespace ops = moesys::model::ops;

namespace {

// Every MPI call of the probe is non-blocking and awaited with the runtime's deadline, so that a rank that stalls
// or dies during the probe ends the run with a message instead of a hang.
double probe_timeout_s() {
  const char* env = std::getenv("MOESYS_EXEC_TIMEOUT_S");
  return env ? std::atof(env) : 300.0;
}

void await(MPI_Request& request, const char* what) {
  await_requests(&request, 1, probe_timeout_s(), std::string("the machine probe's ") + what);
}

void barrier() {
  MPI_Request r = MPI_REQUEST_NULL;
  MPI_Ibarrier(MPI_COMM_WORLD, &r);
  await(r, "barrier");
}

double all_reduce(double v, MPI_Op op) {
  double out = v;
  MPI_Request r = MPI_REQUEST_NULL;
  MPI_Iallreduce(&v, &out, 1, MPI_DOUBLE, op, MPI_COMM_WORLD, &r);
  await(r, "all-reduce");
  return out;
}
using clock = std::chrono::steady_clock;
double since(clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); }

// Runs fn repeatedly for at least min_s and returns seconds per call (the best of 3 batches).
template <typename Fn>
double time_per_call(Fn&& fn, double min_s = 0.15) {
  fn();  // warm-up
  double best = 1e30;
  for (int batch = 0; batch < 3; ++batch) {
    int n = 0;
    const auto t = clock::now();
    do fn(), ++n;
    while (since(t) < min_s / 3);
    best = std::min(best, since(t) / n);
  }
  return best;
}

// Every rank makes the same number of calls (the most any rank needs for `min_s`), all at once, so that the rate
// includes the contention of ranks that share cores; collectives need the equal count anyway.
template <typename Fn>
double time_together(Fn&& fn, double min_s) {
  fn();
  const auto t = clock::now();
  fn();
  double reps = std::ceil(min_s / std::max(since(t), 1e-7));
  reps = all_reduce(reps, MPI_MAX);
  barrier();
  const auto t1 = clock::now();
  for (int i = 0; i < int(reps); ++i) fn();
  return since(t1) / reps;
}

// Collectives: every rank must make the same number of calls, so the count is fixed.
template <typename Fn>
double time_fixed(Fn&& fn, int reps) {
  fn();
  barrier();
  const auto t = clock::now();
  for (int i = 0; i < reps; ++i) fn();
  return since(t) / reps;
}

// Seconds of the probe shape's representative GEMM at `flop_per_s`.
double shape_gemm_s(const ProbeShape& s, double flop_per_s) {
  return 2.0 * double(s.gemm_m) * double(s.gemm_n) * double(s.gemm_k) / flop_per_s;
}

// The probe shape's representative GEMM on operands allocated in `rt` (fp32).
core::Kernel shape_gemm(CpuRuntime& rt, const ProbeShape& s) {
  const auto a = rt.alloc(core::Tier::hbm, std::uint64_t(s.gemm_m * s.gemm_k) * 4, "probe");
  const auto b = rt.alloc(core::Tier::hbm, std::uint64_t(s.gemm_k * s.gemm_n) * 4, "probe");
  const auto c = rt.alloc(core::Tier::hbm, std::uint64_t(s.gemm_m * s.gemm_n) * 4, "probe");
  return ops::gemm(s.gemm_m, s.gemm_n, s.gemm_k, a, b, c);
}

// The median time of one call over `reps` calls, every rank making the same number: a probe of a few milliseconds
// on a shared machine meets other work's bursts, which a mean over the calls would carry.
template <typename Fn>
double median_fixed(Fn&& fn, int reps) {
  fn();
  barrier();
  std::vector<double> t(static_cast<std::size_t>(reps));
  for (double& each : t) {
    const auto t0 = clock::now();
    fn();
    each = since(t0);
  }
  std::nth_element(t.begin(), t.begin() + reps / 2, t.end());
  return t[std::size_t(reps / 2)];
}

double world_min(double v) {
  return all_reduce(v, MPI_MIN);
}
double world_max(double v) {
  return all_reduce(v, MPI_MAX);
}
}  // namespace

MachineRates probe_machine(const ProbeShape& s) {
  MachineRates r;
  MPI_Comm_size(MPI_COMM_WORLD, &r.ranks);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  barrier();
  {  // GEMM
    std::vector<float> a(std::size_t(s.gemm_m * s.gemm_k), 0.5f), b(std::size_t(s.gemm_k * s.gemm_n), 0.25f),
        c(std::size_t(s.gemm_m * s.gemm_n));
    const double t = time_together([&] {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(s.gemm_m), int(s.gemm_n), int(s.gemm_k), 1.f,
                  a.data(), int(s.gemm_k), b.data(), int(s.gemm_n), 0.f, c.data(), int(s.gemm_n));
    }, 0.5);
    r.gemm_flop_per_s = world_min(2.0 * double(s.gemm_m) * double(s.gemm_n) * double(s.gemm_k) / t);
  }
  barrier();
  {  // memory: copies of 32 MiB (read + write traffic)
    const std::size_t n = 32u << 20;
    std::vector<char> a(n, 1), b(n, 2);
    const double t = time_together([&] { std::memcpy(b.data(), a.data(), n); }, 0.3);
    r.copy_bytes_per_s = world_min(2.0 * double(n) / t);
  }
  barrier();
  {  // One step inside a collective: a tiny raw MPI all-to-all that every rank enters together and polls, as MPI's
     // own stages run once all members are in the call (shared-memory messages of a few microseconds).
    std::vector<int> out(std::size_t(r.ranks), rank), in(std::size_t(r.ranks));
    r.message_latency_s = world_max(time_fixed([&] {
      MPI_Request q = MPI_REQUEST_NULL;
      MPI_Ialltoall(out.data(), 1, MPI_INT, in.data(), 1, MPI_INT, MPI_COMM_WORLD, &q);
      await(q, "all-to-all");
    }, 200));
  }
  barrier();
  {  // All-to-all through the runtime's own path (a stream's worker, MPI's non-blocking all-to-all, the polling that
     // progresses it), as the program runs it, without the signature check that validation also leaves out: a tiny
     // one for the latency of one step (the simulator's all-to-all is one latency step), then one at the model's
     // size for the rate. Raw blocking MPI calls spin inside MPI and would measure a path the program never takes.
    core::ClusterGeneratorOptions o;
    o.nodes = 1, o.gpus_per_node = r.ranks, o.nics_per_node = 1;
    CpuOptions quiet;
    quiet.check_collectives = false;
    CpuRuntime rt(core::generate_cluster(o), quiet);
    const core::Group world = core::Group::world(r.ranks);
    const std::uint64_t part = std::max<std::uint64_t>(4, s.all_to_all_bytes / std::uint64_t(r.ranks));
    const auto send = rt.alloc(core::Tier::hbm, part * std::uint64_t(r.ranks), "probe");
    const auto recv = rt.alloc(core::Tier::hbm, part * std::uint64_t(r.ranks), "probe");
    auto all_to_all = [&](std::uint64_t bytes, int reps) {
      const std::vector<std::uint64_t> sizes(std::size_t(r.ranks), bytes);
      return world_max(median_fixed([&] {
        rt.wait(rt.all_to_all(core::streams::kComm, world, send, sizes, recv, sizes, core::CollectiveAlgo::direct));
      }, reps));
    };
    // The latency a collective meets beside compute: its stream's worker and MPI's progress wait for cores that GEMMs
    // hold (on every rank: the collective completes when the last member gets a core). Each rank queues GEMMs on
    // its compute stream for longer than the tiny all-to-alls take, then times them. The mean, not the median: most
    // calls take 50 to 60 us, but one in five or so waits for a scheduler slice and takes 3 to 7 ms (mean about
    // 0.9 ms on 4 ranks over 2 cores), and a program pays every call, its tail included.
    const core::Kernel gemm = shape_gemm(rt, s);
    const double gemm_s = shape_gemm_s(s, r.gemm_flop_per_s);
    const int background = static_cast<int>(std::clamp(1.0 / gemm_s, 4.0, 4000.0));
    r.latency_s = all_to_all(4, 50);
    const double t = all_to_all(part, 20);
    const double moved = r.ranks > 1 ? double(part) * (r.ranks - 1) : 2.0 * double(part);  // to others, or a copy
    r.all_to_all_bytes_per_s = moved / std::max(t - r.latency_s, 0.1 * t);
    for (int i = 0; i < background; ++i) rt.compute(core::streams::kCompute, gemm, "probe");
    {
      const std::vector<std::uint64_t> tiny(std::size_t(r.ranks), 4);
      r.busy_latency_s = world_max(time_fixed([&] {
        rt.wait(rt.all_to_all(core::streams::kComm, world, send, tiny, recv, tiny, core::CollectiveAlgo::direct));
      }, 100));
      // The same at the model's size: its messages go by rendezvous (each needs several polls by both members,
      // each poll of a sleeping worker a wake-up that meets the busy cores), so beside compute it moves slower
      // than alone, on top of the call's cost.
      const std::vector<std::uint64_t> sizes(std::size_t(r.ranks), part);
      const double busy = world_max(time_fixed([&] {
        rt.wait(rt.all_to_all(core::streams::kComm, world, send, sizes, recv, sizes, core::CollectiveAlgo::direct));
      }, 40));
      r.busy_all_to_all_bytes_per_s = moved / std::max(busy - r.busy_latency_s, 0.1 * busy);
    }
    rt.synchronize();
    rt.clear_spans();
    if (r.ranks > 1) {
      // A member that waits: rank 0 joins a tiny all-to-all late; the CPU time the others' communication worker
      // spends meanwhile is its polling (their host thread blocks without spinning). Two delays separate the spin
      // at the start of a wait (the intercept) from the share of a core its polls between sleeps take (the slope).
      auto waiting = [&](double delay_s) {
        double cpu = 0, wall = 0;
        const std::vector<std::uint64_t> sizes(std::size_t(r.ranks), 4);
        for (int i = 0; i < 3; ++i) {
          barrier();
          if (rank == 0) std::this_thread::sleep_for(std::chrono::duration<double>(delay_s));
          const double c0 = rt.stream_cpu_s(core::streams::kComm);
          const auto t0 = clock::now();
          rt.wait(rt.all_to_all(core::streams::kComm, world, send, sizes, recv, sizes, core::CollectiveAlgo::direct));
          if (rank != 0) cpu += rt.stream_cpu_s(core::streams::kComm) - c0, wall += since(t0);
        }
        const double n = 3.0 * (r.ranks - 1);
        return std::pair{all_reduce(cpu, MPI_SUM) / n, all_reduce(wall, MPI_SUM) / n};
      };
      const auto [cpu_short, wall_short] = waiting(0.01);
      const auto [cpu_long, wall_long] = waiting(0.05);
      r.progress_core_share = std::clamp((cpu_long - cpu_short) / std::max(wall_long - wall_short, 1e-3), 0.0, 1.0);
      r.progress_spin_s = std::clamp(cpu_short - r.progress_core_share * wall_short, 0.0, wall_short);
      rt.clear_spans();
    }
  }
  {  // the runtime's fixed cost of one tiny kernel: a stream's worker runs a batch issued back to back (issue and
     // execution overlap, as kernel launches do on a GPU), so the batch's time per kernel is that cost
    core::ClusterGeneratorOptions o;
    o.nodes = 1, o.gpus_per_node = r.ranks, o.nics_per_node = 1;
    CpuRuntime rt(core::generate_cluster(o));
    auto buf = rt.alloc(core::Tier::hbm, 64, "probe");
    constexpr int kBatch = 64;
    r.op_overhead_s = world_max(time_per_call([&] {
                                  for (int i = 0; i < kBatch; ++i)
                                    rt.compute(core::streams::kCompute, ops::scale(buf, 1, 1.0), "probe");
                                  rt.synchronize();
                                  rt.clear_spans();
                                }, 0.03) / kBatch);
  }
  {  // a stream's wake-up: operations that alternate between two streams, each waiting for the previous one, so
     // every one starts on a worker that was idle; the time per operation beyond the fixed cost is the wake-up
    core::ClusterGeneratorOptions o;
    o.nodes = 1, o.gpus_per_node = r.ranks, o.nics_per_node = 1;
    CpuRuntime rt(core::generate_cluster(o));
    auto buf = rt.alloc(core::Tier::hbm, 64, "probe");
    constexpr int kHops = 32;
    const core::StreamId streams[2] = {core::streams::kCompute, core::streams::kComm};
    const double per_op = world_max(time_per_call([&] {
                                      for (int i = 0; i < kHops; ++i) {
                                        const core::Event e = rt.compute(streams[i % 2], ops::scale(buf, 1, 1.0), "probe");
                                        rt.stream_wait(streams[(i + 1) % 2], e);
                                      }
                                      rt.synchronize();
                                      rt.clear_spans();
                                    }, 0.05) / kHops);
    r.stream_wake_s = std::max(0.0, per_op - r.op_overhead_s);
    // The same wake-up for a compute worker that has been computing, while every core runs another rank's kernel
    // (ranks beyond the compute slots on an oversubscribed machine, as the program's ranks meet it): the first
    // `slots` ranks keep the slots busy with GEMMs; the others alternate a GEMM on the compute stream with a tiny
    // copy on the communication stream, and the delay from each copy's end to the start of the GEMM that waits
    // for it is the wake-up (a mean of 0.1 to 0.8 ms on 4 ranks over 2 cores, against 14 us on idle cores): a
    // woken thread of the same priority as the running kernel threads often waits for one to end its slice.
    const int slots = default_compute_slots();
    r.busy_compute_wake_s = r.stream_wake_s;
    if (r.ranks > slots) {
      const auto src = rt.alloc(core::Tier::hbm, 64, "probe");
      const core::Kernel gemm = shape_gemm(rt, s);
      constexpr int kRounds = 40;
      rt.clear_spans();
      barrier();
      if (rank < slots) {  // about as long as the others' rounds take on the remaining slots
        for (int i = 0; i < static_cast<int>(kRounds * (r.ranks - slots)); ++i)
          rt.compute(core::streams::kCompute, gemm, "probe");
      } else {
        for (int i = 0; i < kRounds; ++i) {
          rt.stream_wait(core::streams::kComm, rt.compute(core::streams::kCompute, gemm, "probe"));
          rt.stream_wait(core::streams::kCompute, rt.copy(core::streams::kComm, buf, src, 64));
        }
      }
      rt.synchronize();
      double sum = 0;
      int n = 0;
      const std::vector<core::Span>& spans = rt.spans();
      for (std::size_t i = 1; i + 1 < spans.size() && rank >= slots; ++i)
        if (spans[i].kind == core::SpanKind::copy && spans[i + 1].kind == core::SpanKind::compute)
          sum += std::max(0.0, spans[i + 1].start_s - spans[i].end_s), ++n;
      rt.clear_spans();
      const double all = all_reduce(sum, MPI_SUM), count = all_reduce(double(n), MPI_SUM);
      if (count > 0) r.busy_compute_wake_s = std::max(r.stream_wake_s, all / count);
      // A slot handed over from one rank's kernel to another's that waits for it: the waiting worker sleeps on its
      // ticket, and the slot idles from the release until that worker is awake on a core. Every rank runs GEMMs
      // back to back, so that most kernels queue for their slot; the slots' own accounts give the slot time spent
      // free while a kernel waited, per kernel that became ready behind every slot (the simulator charges the
      // handoff to those).
      const int gemms =
          static_cast<int>(std::clamp(0.05 / std::max(shape_gemm_s(s, r.gemm_flop_per_s), 1e-6), 8.0, 400.0));
      barrier();
      const ComputeSlots::Stats before = rt.slot_stats();
      barrier();
      for (int i = 0; i < gemms; ++i) rt.compute(core::streams::kCompute, gemm, "probe");
      rt.synchronize();
      barrier();
      const ComputeSlots::Stats after = rt.slot_stats();
      rt.clear_spans();
      const double queued = double(after.queued - before.queued);
      r.slot_handoff_s = world_max(queued > 0 ? (after.stalled_s - before.stalled_s) / queued : 0.0);
    }
  }
  {  // SSD: write (with fsync) and read back a 32 MiB file
    const std::size_t n = 32u << 20;
    std::vector<char> a(n, 3);
    const auto path = std::filesystem::temp_directory_path() / ("moesys-probe-" + std::to_string(::getpid()));
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    auto t = clock::now();
    const bool ok = fd >= 0 && ::pwrite(fd, a.data(), n, 0) == ssize_t(n) && ::fsync(fd) == 0;
    const double wt = since(t);
    t = clock::now();
    const bool rok = ok && ::pread(fd, a.data(), n, 0) == ssize_t(n);
    const double rt = since(t);
    if (fd >= 0) ::close(fd), std::filesystem::remove(path);
    r.ssd_write_bytes_per_s = world_min(ok ? double(n) / wt : 1e8);
    r.ssd_read_bytes_per_s = world_min(rok ? double(n) / rt : 1e8);
  }
  return r;
}

namespace {

// Evicts a kernel's operands from every cache level (where the instruction set allows it).
void evict_operands(core::Kernel& k) {
#if defined(__x86_64__)
  for (const core::Buffer* b : core::kernel_operands(k))
    if (*b && b->data && b->bytes) {  // every line the buffer touches, the first one from its start down
      const auto first = reinterpret_cast<std::uintptr_t>(b->data) & ~std::uintptr_t{63};
      const auto end = reinterpret_cast<std::uintptr_t>(b->data) + b->bytes;
      for (std::uintptr_t line = first; line < end; line += 64) _mm_clflush(reinterpret_cast<const void*>(line));
    }
  _mm_mfence();
#else
  (void)k;
#endif
}

// A few thousand values of either sign between 0.05 and 2 in magnitude, the same on every call and rank.
const std::vector<float>& probe_values() {
  static const std::vector<float> values = [] {
    std::vector<float> v(4096);
    std::uint32_t x = 2463534242u;  // xorshift32
    for (float& f : v) {
      x ^= x << 13, x ^= x >> 17, x ^= x << 5;
      const float magnitude = 0.05f + 1.95f * static_cast<float>(x >> 8) / static_cast<float>(1u << 24);
      f = (x & 1u) ? -magnitude : magnitude;
    }
    return v;
  }();
  return values;
}

void fill_floats(const core::Buffer& b, bool non_negative = false) {
  if (!b || !b.data) return;
  const std::vector<float>& v = probe_values();
  auto* out = static_cast<char*>(b.data);
  for (std::uint64_t done = 0; done < b.bytes;) {
    const std::uint64_t n = std::min<std::uint64_t>(b.bytes - done, v.size() * sizeof(float));
    std::memcpy(out + done, v.data(), n);
    done += n;
  }
  if (non_negative)  // a square root of a negative second moment would call libm's error path
    for (float* f = static_cast<float*>(b.data), *end = f + b.bytes / sizeof(float); f < end; ++f) *f = std::fabs(*f);
}

void fill_zeros(const core::Buffer& b) {
  if (b && b.data) std::memset(b.data, 0, b.bytes);
}

/// Places a kernel's operands in an arena: each buffer gets its extent (views keep their offsets inside it, so
/// in-place kernels stay in place), one after the other from `base`. Returns the kernel pointing there and sets
/// `used` to the bytes it spans.
core::Kernel bind_at(core::Kernel k, char* base, std::uint64_t& used) {
  const std::vector<core::Buffer*> list = core::kernel_operands(k);
  std::map<std::uint64_t, std::uint64_t> extent, start;
  for (core::Buffer* b : list)
    if (*b) extent[b->id] = std::max(extent[b->id], b->offset + b->bytes);
  used = 64;  // never empty
  for (const auto& [id, bytes] : extent) start[id] = used, used += (bytes + 63) / 64 * 64;
  for (core::Buffer* b : list)
    if (*b) b->data = base ? base + start[b->id] + b->offset : nullptr;  // no base: the extent only
  return k;
}

// CPUs in a list as the kernel writes them ("0-1,4"): 1 where it cannot be read.
int cpus_in_list(const std::string& list) {
  int n = 0;
  std::istringstream in(list);
  for (std::string part; std::getline(in, part, ',');) {
    int lo = 0, hi = 0;
    const int got = std::sscanf(part.c_str(), "%d-%d", &lo, &hi);
    n += got == 2 && hi >= lo ? hi - lo + 1 : got == 1 ? 1 : 0;
  }
  return std::max(1, n);
}

// The cache private to one compute slot: its BLAS threads' shares of their level-2 caches (an L2 shared by
// hyperthread siblings or a cluster of cores counts once among them). The last-level cache is shared with the other
// slots (and, on a virtual machine, with other tenants); the cold rates include what it holds.
double slot_cache_bytes(int threads_per_slot) {
  double bytes = static_cast<double>(::sysconf(_SC_LEVEL2_CACHE_SIZE));
  int sharing = 1;
  for (int index = 0; index < 8; ++index) {  // cpu0's cache of level 2 holding data, and who shares it
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(index) + "/";
    std::ifstream level(dir + "level"), type(dir + "type"), shared(dir + "shared_cpu_list");
    int l = 0;
    std::string t, list;
    if (!(level >> l) || !(type >> t) || l != 2 || t == "Instruction") continue;
    if (std::getline(shared, list)) sharing = cpus_in_list(list);
    break;
  }
  if (bytes <= 0) bytes = static_cast<double>(::sysconf(_SC_LEVEL1_DCACHE_SIZE)), sharing = 1;
  if (bytes <= 0) bytes = 1 << 20, sharing = 1;  // the operating system does not say: a common L2
  return bytes / sharing * threads_per_slot;
}

}  // namespace

void fill_probe_operands(core::Kernel& kernel, bool outputs_only) {
  std::visit([&](auto& op) {
    using Op = std::decay_t<decltype(op)>;
    if constexpr (std::is_same_v<Op, core::GemmOp>) {
      if (!outputs_only) fill_floats(op.a), fill_floats(op.b);
      fill_floats(op.c);
    } else if constexpr (std::is_same_v<Op, core::AttentionOp>) {
      if (!outputs_only)
        for (const core::Buffer* b : {&op.q, &op.k, &op.v, &op.d_o}) fill_floats(*b);
      for (const core::Buffer* b : op.backward ? std::vector<const core::Buffer*>{&op.d_q, &op.d_k, &op.d_v}
                                               : std::vector<const core::Buffer*>{&op.o})
        fill_floats(*b);
      if (op.backward && !outputs_only) fill_floats(op.o);
    } else if constexpr (std::is_same_v<Op, core::TensorOp>) {
      const model::ops::IndexOperands index = model::ops::index_operands(op.kind);
      const model::ops::IndexOperands positive = model::ops::non_negative_operands(op.kind);
      auto listed = [](const std::vector<std::size_t>& list, std::size_t i) {
        return std::find(list.begin(), list.end(), i) != list.end();
      };
      auto fill = [](const core::Buffer& b, bool is_index, bool non_negative) {
        is_index ? fill_zeros(b) : fill_floats(b, non_negative);
      };
      // Floats first, indices last: an index operand that aliases a float one stays valid.
      for (bool indices : {false, true}) {
        for (std::size_t i = 0; i < op.in.size(); ++i)
          if (listed(index.in, i) == indices && (!outputs_only || indices))
            fill(op.in[i], indices, listed(positive.in, i));
        for (std::size_t i = 0; i < op.out.size(); ++i)
          if (listed(index.out, i) == indices) fill(op.out[i], indices, listed(positive.out, i));
      }
    }
  }, kernel);
}

KernelRates probe_kernel_rates(const std::vector<core::Kernel>& samples, double op_overhead_s) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  KernelRates out;
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  out.threads_per_rank = std::max(1, openblas_get_num_threads());
  out.compute_slots = std::max(1, cores / out.threads_per_rank);
  // As many ranks as there are compute slots measure every class at once, each on its own slot, so that the rate
  // includes what kernels running side by side share (the memory system, the last-level cache, the clock of a
  // fully loaded chip); the other ranks wait without spinning. The simulator then shares the slots among the
  // ranks that compute (NodeSpec::compute_slots), so a rank computes faster while others wait.
  const bool measures = rank < out.compute_slots;
  out.cache_bytes = slot_cache_bytes(out.threads_per_rank);
  // Two rates per sample: cold (operands evicted, out of memory) and hot (operands just touched on this core).
  std::vector<double> rates(2 * samples.size(), 0.0);
  for (std::size_t i = 0; i < samples.size(); ++i) {
    double rate[2] = {0, 0};
    if (measures) {
      std::uint64_t used = 0;
      bind_at(samples[i], nullptr, used);
      std::vector<char> memory(used, 0);
      core::Kernel kernel = bind_at(samples[i], memory.data(), used);
      fill_probe_operands(kernel);
      run_kernel(kernel);  // warm-up: code, page tables
      // Cold: each call meets its operands out of every cache, as the program's kernels mostly do (inputs written
      // by another kernel on another core, or long before: activations kept from the forward pass, parameters and
      // optimizer states touched once a step). GeLU's backward at the model's size: 57 us on operands hot in its
      // core's cache, 97 us when the other core wrote them, 125 to 135 us from memory. Hot: the previous call on
      // this core touched every operand (a regroup's output read by the expert GEMM next to it); the simulator
      // mixes the two by the share of a kernel's operands its slot's cache holds (sim/operand_cache.hpp).
      for (int hot = 0; hot < 2; ++hot) {
        std::vector<double> calls;
        double total = 0;
        while (total < 0.03 && calls.size() < 200) {
          fill_probe_operands(kernel, true);
          if (!hot) evict_operands(kernel);
          const auto t0 = clock::now();
          run_kernel(kernel);
          calls.push_back(since(t0));
          total += calls.back();
        }
        std::nth_element(calls.begin(), calls.begin() + calls.size() / 2, calls.end());
        const double t = calls[calls.size() / 2];
        // The fixed cost is added back per kernel by the simulator; keep at least a tenth of the time as work.
        rate[hot] = core::kernel_work(samples[i]) / std::max(t - op_overhead_s, 0.1 * t);
      }
    }
    // The slowest measuring rank's rates (the others contribute +inf), and every class starts together.
    MPI_Request r = MPI_REQUEST_NULL;
    const double inf = std::numeric_limits<double>::infinity();
    double contribution[2] = {measures ? rate[0] : inf, measures ? rate[1] : inf};
    MPI_Iallreduce(contribution, &rates[2 * i], 2, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD, &r);
    await_requests(&r, 1, probe_timeout_s(), "the kernel probe");
  }
  for (std::size_t i = 0; i < samples.size(); ++i) {
    const std::string name = core::kernel_class(samples[i]);
    const double work = core::kernel_work(samples[i]);
    out.rates[name][work] = rates[2 * i];
    // A kernel never runs slower on operands in cache: a hot median under the cold one is the machine's noise.
    out.hot_rates[name][work] = std::max(rates[2 * i], rates[2 * i + 1]);
  }
  {  // every rank reports the slowest measuring rank's cache: the smallest
    MPI_Request r = MPI_REQUEST_NULL;
    double mine = measures ? out.cache_bytes : std::numeric_limits<double>::infinity(), least = 0;
    MPI_Iallreduce(&mine, &least, 1, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD, &r);
    await_requests(&r, 1, probe_timeout_s(), "the kernel probe");
    out.cache_bytes = least;
  }
  return out;
}

core::ClusterSpec cluster_from_rates(const MachineRates& r, const ProbeShape& shape, core::Calibration& cal) {
  cal = core::default_calibration();
  cal.gemm_efficiency = 1.0;
  cal.hbm_efficiency = 1.0;
  cal.nvlink_efficiency = 1.0;
  cal.kernel_launch_s = r.op_overhead_s;
  cal.stream_wake_s = r.stream_wake_s;
  cal.busy_compute_wake_s = r.busy_compute_wake_s;
  cal.slot_handoff_s = r.slot_handoff_s;
  // Ranks that oversubscribe the cores (more kernels than slots) always find the cores held by another rank's
  // kernels when they communicate: their collectives meet the latency measured beside compute.
  // A call's fixed cost (workers waking, members meeting) is paid once per collective; the steps inside it cost
  // what a raw MPI message costs. The simulator's all-to-all is the call and one step.
  const bool oversubscribed = r.ranks > r.kernels.compute_slots;
  const double call = oversubscribed ? r.busy_latency_s : r.latency_s;
  cal.step_latency_s = std::min(r.message_latency_s, call);
  cal.collective_latency_s = call - cal.step_latency_s;
  // MPI has no low-latency protocols (Simple is then always the fastest), and one message per peer pair: no
  // per-peer all-to-all cost beyond the call, no per-peer channel limit, no chunk pipeline of its own (its
  // point-to-point messages ramp as the rest: p2p_half_bandwidth_bytes 0).
  cal.ll_step_latency_s = cal.ll128_step_latency_s = cal.step_latency_s;
  cal.alltoall_net_peer_latency_s = 0;
  cal.p2p_efficiency = 1;
  cal.p2p_half_bandwidth_bytes = 0;
  cal.p2p_channel_bytes_per_s = 0;  // no NCCL channels: a message may take the whole link
  cal.progress_spin_s = r.progress_spin_s;
  cal.progress_core_share = r.progress_core_share;
  // The simulator's rate for a message is link rate * message_efficiency(size): choose the link rate that
  // reproduces the measured all-to-all rate at the measured message size.
  const double msg = double(shape.all_to_all_bytes) / std::max(1, r.ranks);
  const double rate = oversubscribed && r.busy_all_to_all_bytes_per_s > 0 ? r.busy_all_to_all_bytes_per_s
                                                                          : r.all_to_all_bytes_per_s;
  const double link = rate / cal.message_efficiency(msg);
  // memcpy between tiers stands for PCIe: express it as an efficiency of a Gen4 x16 link (capped at 1).
  cal.pcie_efficiency = std::min(1.0, r.copy_bytes_per_s / 2 / core::pcie_bytes_per_s(4, 16));
  nlohmann::json j = {
      {"name", "this-machine-" + std::to_string(r.ranks) + "-ranks"},
      {"description", "This machine as measured by moesys validate: one CPU rank per GPU (MPI + OpenBLAS)."},
      {"nodes", 1},
      {"node",
       {{"gpus", r.ranks},
        {"gpu",
         {{"model", "cpu-rank"},
          {"hbm_gib", 64.0},
          {"hbm_gbytes_per_s", r.copy_bytes_per_s / 1e9},
          {"peak_tflops", {{"fp32", r.gemm_flop_per_s / 1e12}, {"tf32", r.gemm_flop_per_s / 1e12},
                           {"fp16", r.gemm_flop_per_s / 1e12}, {"bf16", r.gemm_flop_per_s / 1e12}}}}},
        {"intra_node", {{"kind", "nvswitch"}, {"gbytes_per_s_per_gpu", link / 1e9}}},
        {"host_memory", {{"capacity_gib", 64.0 * r.ranks}, {"gbytes_per_s", r.copy_bytes_per_s / 1e9}}},
        {"pcie", {{"generation", 4}, {"lanes", 16}, {"switches", nlohmann::json::array()}}},
        {"nics", {{"count", 1}, {"gbits_per_s", 100}, {"gpus", nlohmann::json::array()}}},
        {"ssd", {{"capacity_tib", 1.0}, {"read_gbytes_per_s", r.ssd_read_bytes_per_s / 1e9},
                 {"write_gbytes_per_s", r.ssd_write_bytes_per_s / 1e9}}}}}};
  nlohmann::json all = nlohmann::json::array(), sw = {{"gpus", nlohmann::json::array()}, {"nics", {0}}};
  for (int g = 0; g < r.ranks; ++g) all.push_back(g), sw["gpus"].push_back(g);
  if (!r.kernels.rates.empty()) {
    j["node"]["gpu"]["kernel_gwork_per_s"] = core::kernel_rates_to_json(r.kernels.rates);
    j["node"]["gpu"]["kernel_hot_gwork_per_s"] = core::kernel_rates_to_json(r.kernels.hot_rates);
    j["node"]["gpu"]["kernel_cache_mib"] = r.kernels.cache_bytes / (1 << 20);
    j["node"]["compute_slots"] = r.kernels.compute_slots;
  }
  j["node"]["nics"]["gpus"] = nlohmann::json::array({all});
  j["node"]["pcie"]["switches"].push_back(sw);
  return core::parse_cluster(j, "<measured>");
}

}  // namespace moesys::exec::cpu
