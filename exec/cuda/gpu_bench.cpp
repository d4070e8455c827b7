// moesys-gpu-bench: measurements of the CUDA runtime on one GPU, written as one JSON object.
//   offload       ring-memory inference vs all-in-GPU vs layer offload (bench_offload.cpp).
//   copy          host<->device copy bandwidth from pinned and from pageable host memory.
// (The MoE layer of the training program is measured by `moesys train --runtime cuda`, see scripts/gpu-check.sh.)
// Usage: moesys-gpu-bench [--hidden 1024 --ffn 4096 --experts 8 --tokens 4096 --top-k 2 --capacity 1.25
//                          --iters 20 --warmup 3 --layers 8 --slots 4 --rows 1024 --copy-mib 256 --tf32
//                          --skip-offload --out FILE]
// Runs one rank (or one per GPU under mpirun; rank 0 writes). Exit 77 without a GPU, 2 on bad flags.
#include <cuda_runtime_api.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/cluster.hpp"
#include "exec/cpu/mpi_comms.hpp"
#include "exec/cuda/bench_offload.hpp"
#include "exec/cuda/cuda_check.hpp"
#include "exec/cuda/cuda_runtime.hpp"

namespace {

using namespace moesys;
using nlohmann::json;

struct Flags {
  std::int64_t hidden = 1024, ffn = 4096, tokens = 4096, rows = 1024;
  int experts = 8, top_k = 2, iters = 20, warmup = 3, layers = 8, slots = 4, copy_mib = 256;
  double capacity = 1.25;
  bool tf32 = false, skip_offload = false;
  std::string out;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr, "moesys-gpu-bench: %s\n", why.c_str());
  std::exit(2);
}

Flags parse(int argc, char** argv) {
  Flags f;
  std::map<std::string, std::int64_t*> i64 = {
      {"--hidden", &f.hidden}, {"--ffn", &f.ffn}, {"--tokens", &f.tokens}, {"--rows", &f.rows}};
  std::map<std::string, int*> i32 = {{"--experts", &f.experts},  {"--top-k", &f.top_k},   {"--iters", &f.iters},
                                     {"--warmup", &f.warmup},    {"--layers", &f.layers}, {"--slots", &f.slots},
                                     {"--copy-mib", &f.copy_mib}};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--tf32")
      f.tf32 = true;
    else if (a == "--skip-offload")
      f.skip_offload = true;
    else if (i + 1 >= argc)
      usage("flag " + a + " needs a value or is unknown");
    else if (a == "--out")
      f.out = argv[++i];
    else if (a == "--capacity")
      f.capacity = std::atof(argv[++i]);
    else if (i64.count(a))
      *i64[a] = std::atoll(argv[++i]);
    else if (i32.count(a))
      *i32[a] = std::atoi(argv[++i]);
    else
      usage("unknown flag " + a);
  }
  if (f.hidden <= 0 || f.ffn <= 0 || f.tokens <= 0 || f.experts <= 0 || f.top_k <= 0 || f.iters <= 0 || f.slots < 2 ||
      f.layers <= 0 || f.copy_mib <= 0)
    usage("sizes must be positive (and --slots at least 2)");
  return f;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

json copy_benchmark(exec::cuda::CudaRuntime& rt, int mib) {
  const std::uint64_t bytes = std::uint64_t(mib) << 20;
  core::Buffer dev = rt.alloc(core::Tier::hbm, bytes, "bench"), pinned = rt.alloc(core::Tier::dram, bytes, "bench");
  std::vector<char> pageable(bytes, 1);
  const cudaStream_t s = rt.cuda_stream(core::streams::kH2D);
  auto rate = [&](void* dst, const void* src) {
    const int reps = 5;
    MOESYS_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, s));  // warm-up
    MOESYS_CUDA_CHECK(cudaStreamSynchronize(s));
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) MOESYS_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, s));
    MOESYS_CUDA_CHECK(cudaStreamSynchronize(s));
    return double(bytes) * reps / seconds_since(t0);
  };
  json out = {{"bytes", bytes},
              {"pinned_h2d_bytes_per_s", rate(rt.address(dev), pinned.data)},
              {"pinned_d2h_bytes_per_s", rate(pinned.data, rt.address(dev))},
              {"pageable_h2d_bytes_per_s", rate(rt.address(dev), pageable.data())},
              {"pageable_d2h_bytes_per_s", rate(pageable.data(), rt.address(dev))}};
  rt.free(dev), rt.free(pinned);
  return out;
}

void write_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  std::ofstream(tmp) << text << "\n";
  std::filesystem::rename(tmp, path);
}

}  // namespace

int main(int argc, char** argv) {
  const Flags f = parse(argc, argv);
  exec::cpu::MpiSession mpi(&argc, &argv);
  if (exec::cuda::cuda_device_count() == 0) {
    std::printf("SKIP: %s\n", exec::cuda::cuda_device_summary().c_str());
    return 77;
  }
  try {
    core::ClusterGeneratorOptions o;
    o.nodes = 1, o.gpus_per_node = mpi.size(), o.nics_per_node = 1, o.gpu = "h100";
    exec::cuda::CudaOptions opt;
    opt.allow_tf32 = f.tf32;
    exec::cuda::CudaRuntime rt(core::generate_cluster(o), opt);
    cudaDeviceProp prop{};
    MOESYS_CUDA_CHECK(cudaGetDeviceProperties(&prop, rt.device()));
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver), cudaRuntimeGetVersion(&runtime);
    json result = {{"device", prop.name}, {"cuda_driver", driver}, {"cuda_runtime", runtime}, {"ranks", mpi.size()}};
    auto progress = [&](const char* what) {
      if (mpi.rank() == 0) std::fprintf(stderr, "moesys-gpu-bench: %s\n", what), std::fflush(stderr);
    };
    if (!f.skip_offload) {
      progress("offloaded inference: all-in-GPU, layer offload, ring memory");
      exec::cuda::bench::OffloadConfig oc;
      oc.layers = f.layers, oc.experts = f.experts, oc.rows = f.rows, oc.hidden = f.hidden, oc.ffn = f.ffn;
      oc.slots = f.slots;
      result["offload"] = exec::cuda::bench::run_offload_benchmark(rt, oc);
    }
    progress("host-device copy bandwidth");
    result["copy"] = copy_benchmark(rt, f.copy_mib);
    if (mpi.rank() == 0) {
      const std::string text = result.dump(2);
      if (f.out.empty())
        std::printf("%s\n", text.c_str());
      else
        write_atomically(f.out, text);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moesys-gpu-bench: failure: %s\n", e.what());
    return 1;
  }
  return 0;
}
