#pragma once
// Offloaded MoE inference on one GPU, measured for real: L layers of expert FFNs whose weights are either resident
// in HBM, or live in pinned host memory and are copied into HBM slots (H2D stream) while the expert GEMMs of
// earlier layers run (compute stream).
#include <cstdint>
#include <nlohmann/json.hpp>

#include "exec/cuda/cuda_runtime.hpp"

namespace moesys::exec::cuda::bench {

struct OffloadConfig {
  int layers = 8;
  int experts = 8;           // experts per layer held by this GPU
  std::int64_t rows = 1024;  // tokens each expert processes per layer
  std::int64_t hidden = 1024, ffn = 4096;
  int slots = 4;  // ring memory: K HBM slots, each one layer's experts
  int iterations = 3;
};

/// Runs all-in-GPU, layer offload (two slots: fetch one layer ahead) and ring memory (K slots, K-1 layers ahead),
/// returning per mode the time per inference pass, the bytes copied and the HBM used for expert weights.
nlohmann::json run_offload_benchmark(CudaRuntime& rt, const OffloadConfig& config);

}  // namespace moesys::exec::cuda::bench
