#include "model/tensors.hpp"

#include <cstring>
#include <random>

namespace moesys::model {

std::vector<float> normal_floats(std::int64_t n, double stddev, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> dist(0.0, stddev);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = static_cast<float>(dist(gen));
  return v;
}

void upload(core::Runtime& rt, const core::Buffer& dst, const void* src, std::uint64_t bytes) {
  if (dst.tier == core::Tier::dram && dst.data) {
    rt.synchronize();
    std::memcpy(dst.data, src, bytes);
    return;
  }
  // The copy runs on the H2D stream: work already issued that still reads `dst` must finish first.
  rt.synchronize();
  core::Buffer staging = rt.alloc(core::Tier::dram, bytes, "staging");
  if (staging.data) std::memcpy(staging.data, src, bytes);
  rt.wait(rt.copy(core::streams::kH2D, dst, staging, bytes));
  rt.free(staging);
}

bool download(core::Runtime& rt, const core::Buffer& src, void* dst, std::uint64_t bytes) {
  rt.synchronize();
  if (src.tier == core::Tier::dram) {
    if (!src.data) return false;
    std::memcpy(dst, src.data, bytes);
    return true;
  }
  core::Buffer staging = rt.alloc(core::Tier::dram, bytes, "staging");
  rt.wait(rt.copy(core::streams::kD2H, staging, src, bytes));
  const bool real = staging.data != nullptr;
  if (real) std::memcpy(dst, staging.data, bytes);
  rt.free(staging);
  return real;
}

std::vector<float> download_floats(core::Runtime& rt, const core::Buffer& src, std::int64_t elems) {
  std::vector<float> v(static_cast<std::size_t>(elems));
  if (!download(rt, src, v.data(), f32_bytes(elems))) v.clear();
  return v;
}

Param make_param(core::Runtime& rt, const std::string& name, std::int64_t elems, core::Tier tier, double stddev,
                 std::uint64_t seed, bool replicated, double constant) {
  Param p;
  p.name = name;
  p.elems = elems;
  p.replicated = replicated;
  const auto bytes = f32_bytes(elems);
  p.value = rt.alloc(tier, bytes, "param");
  p.grad = rt.alloc(tier, bytes, "grad");
  p.m = rt.alloc(tier, bytes, "optimizer");
  p.v = rt.alloc(tier, bytes, "optimizer");
  std::vector<float> init = stddev > 0 ? normal_floats(elems, stddev, seed)
                                       : std::vector<float>(static_cast<std::size_t>(elems), float(constant));
  upload(rt, p.value, init.data(), bytes);
  std::vector<float> zeros(static_cast<std::size_t>(elems), 0.f);
  for (const auto* b : {&p.grad, &p.m, &p.v}) upload(rt, *b, zeros.data(), bytes);
  return p;
}

void free_param(core::Runtime& rt, Param& p) {
  for (auto* b : {&p.value, &p.grad, &p.m, &p.v}) rt.free(*b);
}

}  // namespace moesys::model
