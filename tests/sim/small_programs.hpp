#pragma once
// Building blocks of the small programs the simulator's tests run: generated clusters and square GEMMs.
#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/cluster.hpp"
#include "core/runtime.hpp"

namespace moesys::test {

/// A generated cluster of `n` nodes (default node and fabric).
inline core::ClusterSpec nodes(int n) {
  core::ClusterGeneratorOptions o;
  o.nodes = n;
  return core::generate_cluster(o);
}

/// A bf16 GEMM of size x size x size.
inline core::GemmOp square_gemm(std::int64_t size) {
  core::GemmOp g;
  g.m = g.n = g.k = size;
  g.dtype = core::Dtype::bf16;
  return g;
}

/// Training configurations that shortcuts of the simulator are checked on: the paper's deepspeed and moesys presets
/// on two nodes, and a today's model (Qwen3) with two pipeline stages on H100s.
inline std::vector<nlohmann::json> reference_training_configs() {
  const nlohmann::json paper = {
      {"model", {{"preset", "gpt-moe"}, {"experts", 16}}}, {"cluster", {{"gpus", 16}}}, {"steps", 2}};
  nlohmann::json deepspeed = paper, moesys = paper;
  deepspeed["policy"] = {{"preset", "deepspeed"}};
  moesys["policy"] = {{"preset", "moesys"}};
  const nlohmann::json qwen = {
      {"model",
       {{"preset", "qwen3-30b-a3b"}, {"layers", 4}, {"seq_len", 1024}, {"micro_batch", 1}, {"global_batch", 16}}},
      {"cluster", {{"gpus", 16}, {"gpu", "h100"}}},
      {"parallel", {{"pp", 2}, {"ep", 8}}},
      {"policy", {{"preset", "megatron"}}},
      {"steps", 1}};
  return {deepspeed, moesys, qwen};
}

}  // namespace moesys::test
