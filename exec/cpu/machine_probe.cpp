#include "exec/cpu/machine_probe.hpp"

#include <cblas.h>
#include <fcntl.h>
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/units.hpp"
#include "exec/cpu/cpu_kernels.hpp"
#include "exec/cpu/cpu_runtime.hpp"
#include "exec/model/ops.hpp"

namespace moesys::exec::cpu {

namespace {
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
  MPI_Allreduce(MPI_IN_PLACE, &reps, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  MPI_Barrier(MPI_COMM_WORLD);
  const auto t1 = clock::now();
  for (int i = 0; i < int(reps); ++i) fn();
  return since(t1) / reps;
}

// Collectives: every rank must make the same number of calls, so the count is fixed.
template <typename Fn>
double time_fixed(Fn&& fn, int reps) {
  fn();
  MPI_Barrier(MPI_COMM_WORLD);
  const auto t = clock::now();
  for (int i = 0; i < reps; ++i) fn();
  return since(t) / reps;
}

double world_min(double v) {
  double out = v;
  MPI_Allreduce(&v, &out, 1, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);
  return out;
}
double world_max(double v) {
  double out = v;
  MPI_Allreduce(&v, &out, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return out;
}
}  // namespace

MachineRates probe_machine(const ProbeShape& s) {
  MachineRates r;
  MPI_Comm_size(MPI_COMM_WORLD, &r.ranks);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Barrier(MPI_COMM_WORLD);
  {  // GEMM
    std::vector<float> a(std::size_t(s.gemm_m * s.gemm_k), 0.5f), b(std::size_t(s.gemm_k * s.gemm_n), 0.25f),
        c(std::size_t(s.gemm_m * s.gemm_n));
    const double t = time_together([&] {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(s.gemm_m), int(s.gemm_n), int(s.gemm_k), 1.f,
                  a.data(), int(s.gemm_k), b.data(), int(s.gemm_n), 0.f, c.data(), int(s.gemm_n));
    }, 0.5);
    r.gemm_flop_per_s = world_min(2.0 * double(s.gemm_m) * double(s.gemm_n) * double(s.gemm_k) / t);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  {  // memory: copies of 32 MiB (read + write traffic)
    const std::size_t n = 32u << 20;
    std::vector<char> a(n, 1), b(n, 2);
    const double t = time_together([&] { std::memcpy(b.data(), a.data(), n); }, 0.3);
    r.copy_bytes_per_s = world_min(2.0 * double(n) / t);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  {  // The model's memory-bound kernels at the model's shapes, in one mix: a CPU's elementwise rate depends on
     // the kernel (softmax's exp and layernorm's reductions are far slower per byte than a GeLU), and the cluster
     // description has one rate for them all, so measure the mix the model runs.
    const std::int64_t T = s.tokens, H = s.hidden, V = s.vocab, F = s.ffn;
    const std::int64_t n = T * F;  // GeLU over the expert hidden activations
    const std::int64_t big = std::max({n, T * V, std::int64_t{1} << 20});
    std::vector<float> v(std::size_t(big) * 6, 0.5f);
    std::vector<int> targets(std::size_t(T), 0);
    auto buf = [&](int i, std::int64_t elems) {
      return core::Buffer{std::uint64_t(i + 1), core::Tier::hbm, std::uint64_t(elems) * 4, v.data() + i * big};
    };
    const core::Buffer tgt{9, core::Tier::hbm, std::uint64_t(T) * 4, targets.data()};
    const core::Kernel kernels[] = {
        ops::gelu(buf(0, n), buf(1, n), n),
        ops::gelu_bwd(buf(0, n), buf(1, n), buf(2, n), n),
        ops::layernorm(buf(0, T * H), buf(1, H), buf(2, H), buf(3, T * H), buf(4, T), buf(5, T), T, H),
        ops::softmax_xent(buf(0, T * V), tgt, buf(1, T * V), buf(2, 1), T, V, 1.0),
        ops::adamw(buf(0, n), buf(1, n), buf(2, n), buf(3, n), n, 1e-9, 0.9, 0.999, 1e-8, 0, 1)};
    double bytes = 0;
    for (const auto& k : kernels) {
      const auto& t = std::get<core::TensorOp>(k);
      bytes += double(t.bytes_read + t.bytes_written);
    }
    const double t = time_together([&] { for (const auto& k : kernels) run_kernel(k); }, 0.3);
    r.stream_bytes_per_s = world_min(bytes / t);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  {  // MPI all-to-all at the model's size, and a small all-reduce for latency
    const std::size_t n = s.all_to_all_bytes;
    std::vector<char> a(n, 1), b(n);
    const int part = int(n / std::size_t(r.ranks));
    const double t = time_fixed([&] {
      MPI_Alltoall(a.data(), part, MPI_BYTE, b.data(), part, MPI_BYTE, MPI_COMM_WORLD);
    }, 30);
    r.all_to_all_bytes_per_s =
        r.ranks > 1 ? world_min(double(part) * (r.ranks - 1) / world_max(t)) : world_min(2.0 * double(n) / t);
    float x[8] = {};
    r.latency_s =
        world_max(time_fixed([&] { MPI_Allreduce(MPI_IN_PLACE, x, 8, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); }, 200));
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

core::ClusterSpec cluster_from_rates(const MachineRates& r, const ProbeShape& shape, core::Calibration& cal) {
  cal = core::default_calibration();
  cal.gemm_efficiency = 1.0;
  cal.hbm_efficiency = 1.0;
  cal.nvlink_efficiency = 1.0;
  cal.kernel_launch_s = r.op_overhead_s;
  cal.step_latency_s = r.latency_s;
  // The simulator's rate for a message is link rate * message_efficiency(size): choose the link rate that
  // reproduces the measured all-to-all rate at the measured message size.
  const double msg = double(shape.all_to_all_bytes) / std::max(1, r.ranks);
  const double link = r.all_to_all_bytes_per_s / cal.message_efficiency(msg);
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
          {"hbm_gbytes_per_s", r.stream_bytes_per_s / 1e9},
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
  j["node"]["nics"]["gpus"] = nlohmann::json::array({all});
  j["node"]["pcie"]["switches"].push_back(sw);
  return core::parse_cluster(j, "<measured>");
}

}  // namespace moesys::exec::cpu
