#pragma once
// Runtime-agnostic tensor helpers for model code: parameters (value, gradient, AdamW moments), deterministic
// initialisation, and host upload / download through a DRAM staging buffer, so the same code works where device
// memory is not host-addressable (CUDA) and where buffers carry no data at all (the simulator: no-ops on data).
#include <cstdint>
#include <string>
#include <vector>

#include "core/runtime.hpp"

namespace moesys::model {

struct Param {
  std::string name;
  std::int64_t elems = 0;
  bool replicated = true;  // same value on every rank: its gradient is all-reduced (dense and gate parameters)
  core::Buffer value, grad, m, v;
};

/// Allocates value, gradient and moments of `elems` floats in `tier`; value ~ N(0, stddev^2) (or = `constant`
/// when stddev is 0) from a generator seeded by `seed`.
Param make_param(core::Runtime& rt, const std::string& name, std::int64_t elems, core::Tier tier, double stddev,
                 std::uint64_t seed, bool replicated, double constant = 0);
void free_param(core::Runtime& rt, Param& p);

/// Copies host values into a buffer of any tier (through DRAM); nothing to copy in the simulator.
void upload(core::Runtime& rt, const core::Buffer& dst, const void* src, std::uint64_t bytes);
/// Reads a buffer back; returns false (leaving `dst` untouched) where buffers carry no data.
bool download(core::Runtime& rt, const core::Buffer& src, void* dst, std::uint64_t bytes);
std::vector<float> download_floats(core::Runtime& rt, const core::Buffer& src, std::int64_t elems);

/// Normal(0, stddev) floats from std::mt19937_64(seed): identical on every rank and run.
std::vector<float> normal_floats(std::int64_t n, double stddev, std::uint64_t seed);

inline std::uint64_t f32_bytes(std::int64_t elems) { return static_cast<std::uint64_t>(elems) * 4; }

}  // namespace moesys::model
