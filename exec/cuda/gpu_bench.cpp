// moesys-gpu-bench: host<->device copy bandwidth of the CUDA runtime on one GPU, from pinned and from pageable
// host memory, written as one JSON object. The policies themselves (training presets and the offloaded inference
// policies) are measured through the one per-rank program: `moesys train|infer --runtime cuda`, see
// scripts/gpu-check.sh.
// Usage: moesys-gpu-bench [--copy-mib 256 --out FILE]
// Runs one rank (or one per GPU under mpirun; rank 0 writes). Exit 77 without a GPU, 2 on bad flags.
#include <cuda_runtime_api.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/cluster.hpp"
#include "exec/cpu/mpi_comms.hpp"
#include "exec/cuda/cuda_check.hpp"
#include "exec/cuda/cuda_runtime.hpp"

namespace {

using namespace moesys;
using nlohmann::json;

struct Flags {
  int copy_mib = 256;
  std::string out;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr, "moesys-gpu-bench: %s\n", why.c_str());
  std::exit(2);
}

Flags parse(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) usage("flag " + a + " needs a value or is unknown");
    if (a == "--out")
      f.out = argv[++i];
    else if (a == "--copy-mib")
      f.copy_mib = std::atoi(argv[++i]);
    else
      usage("unknown flag " + a);
  }
  if (f.copy_mib <= 0 || f.copy_mib > 65536) usage("--copy-mib must be in [1, 65536]");
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
    exec::cuda::CudaRuntime rt(core::generate_cluster(o), exec::cuda::CudaOptions{});
    cudaDeviceProp prop{};
    MOESYS_CUDA_CHECK(cudaGetDeviceProperties(&prop, rt.device()));
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver), cudaRuntimeGetVersion(&runtime);
    json result = {{"device", prop.name}, {"cuda_driver", driver}, {"cuda_runtime", runtime}, {"ranks", mpi.size()}};
    auto progress = [&](const char* what) {
      if (mpi.rank() == 0) std::fprintf(stderr, "moesys-gpu-bench: %s\n", what), std::fflush(stderr);
    };
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
