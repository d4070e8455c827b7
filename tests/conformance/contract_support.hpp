#pragma once
// Helpers of the conformance cases: kernels built from core types only (so that every runtime can run them),
// host <-> buffer transfers that work whether a buffer is host-addressable (CPU), device memory (CUDA) or carries
// no data (simulator), and span look-ups.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "core/runtime.hpp"

namespace moesys::conformance {

inline std::uint64_t floats(std::int64_t n) {
  return static_cast<std::uint64_t>(n) * 4;
}

/// x = v over n floats (TensorOpKind::fill: out {x}, dims {n}, scalars {v}).
inline core::TensorOp fill(const core::Buffer& x, std::int64_t n, double v) {
  core::TensorOp op;
  op.kind = core::TensorOpKind::fill;
  op.out = {x};
  op.dims = {n};
  op.scalars = {v};
  op.bytes_written = floats(n);
  op.flop = 0;
  return op;
}

/// c = a + b over n floats (TensorOpKind::add: in {a, b}, out {c}, dims {n}).
inline core::TensorOp add(const core::Buffer& a, const core::Buffer& b, const core::Buffer& c, std::int64_t n) {
  core::TensorOp op;
  op.kind = core::TensorOpKind::add;
  op.in = {a, b};
  op.out = {c};
  op.dims = {n};
  op.bytes_read = 2 * floats(n);
  op.bytes_written = floats(n);
  op.flop = static_cast<double>(n);
  return op;
}

/// A square fp32 GEMM with real operands: long enough (milliseconds on a CPU core) that work issued behind it on
/// another stream would overtake it if a runtime did not order the two.
struct SlowGemm {
  static constexpr std::int64_t kN = 384;
  core::Buffer a, b, c;
  explicit SlowGemm(core::Runtime& rt)
      : a(rt.alloc(core::Tier::hbm, floats(kN * kN), "conformance")),
        b(rt.alloc(core::Tier::hbm, floats(kN * kN), "conformance")),
        c(rt.alloc(core::Tier::hbm, floats(kN * kN), "conformance")) {}
  core::GemmOp op() const {
    core::GemmOp g;
    g.m = g.n = g.k = kN;
    g.dtype = core::Dtype::fp32;
    g.a = a, g.b = b, g.c = c;
    return g;
  }
  void free(core::Runtime& rt) { rt.free(a), rt.free(b), rt.free(c); }
};

/// True where buffers carry data (real runtimes); false in the simulator, where they carry sizes only.
inline bool carries_data(core::Runtime& rt) {
  core::Buffer probe = rt.alloc(core::Tier::dram, 64, "conformance-probe");
  const bool real = probe.data != nullptr;
  rt.free(probe);
  return real;
}

/// Writes host values into `dst` once all work issued so far has completed. Nothing to write in the simulator.
inline void put(core::Runtime& rt, const core::Buffer& dst, const std::vector<float>& v) {
  rt.synchronize();
  if (dst.data) {
    std::memcpy(dst.data, v.data(), floats(std::int64_t(v.size())));
    return;
  }
  core::Buffer staging = rt.alloc(core::Tier::dram, floats(std::int64_t(v.size())), "conformance-staging");
  if (staging.data) {
    std::memcpy(staging.data, v.data(), staging.bytes);
    rt.wait(rt.copy(core::streams::kH2D, dst, staging, staging.bytes));
  }
  rt.free(staging);
}

/// Reads n floats of `src` as they are once `after` has completed (the caller has waited for it). Reads
/// host-addressable memory directly, without synchronising, so that a missing order shows in the values.
/// Empty in the simulator.
inline std::vector<float> read(core::Runtime& rt, const core::Buffer& src, std::int64_t n, core::Event after = {}) {
  std::vector<float> v(static_cast<std::size_t>(n));
  if (src.data) {
    std::memcpy(v.data(), src.data, floats(n));
    return v;
  }
  core::Buffer staging = rt.alloc(core::Tier::dram, floats(n), "conformance-staging");
  if (!staging.data) {
    rt.free(staging);
    return {};
  }
  rt.stream_wait(core::streams::kD2H, after);
  rt.wait(rt.copy(core::streams::kD2H, staging, src, floats(n)));
  std::memcpy(v.data(), staging.data, floats(n));
  rt.free(staging);
  return v;
}

/// The last span named `name` (nullptr if none).
inline const core::Span* find_span(core::Runtime& rt, const std::string& name) {
  const auto& spans = rt.spans();
  for (auto it = spans.rbegin(); it != spans.rend(); ++it)
    if (it->name == name) return &*it;
  return nullptr;
}

/// Whether a span's name is that of operation `op` ("all_reduce", "copy dram->hbm", ...). Runtimes may add the
/// algorithm after a '/', and spell collectives with or without underscores (the simulator writes "allreduce"
/// as nccl-tests does, the real runtimes "all_reduce"), so both are compared without underscores.
inline bool names_op(const std::string& name, const std::string& op) {
  auto bare = [](std::string v) {
    std::erase(v, '_');
    return v;
  };
  const std::string n = bare(name.substr(0, name.find('/'))), o = bare(op);
  return n == o;
}

/// The last span of `kind` on `stream` that names operation `op` (see names_op).
inline const core::Span* find_span(core::Runtime& rt, core::SpanKind kind, const std::string& stream,
                                   const std::string& op) {
  const auto& spans = rt.spans();
  for (auto it = spans.rbegin(); it != spans.rend(); ++it)
    if (it->kind == kind && it->stream == stream && names_op(it->name, op)) return &*it;
  return nullptr;
}

/// Every element of `v` equals `x` (vacuous where the runtime carries no data: `v` is then empty).
inline void expect_all(const std::vector<float>& v, float x, const std::string& what) {
  std::size_t bad = 0;
  for (float e : v) bad += e != x;
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << v.size() << " values differ from " << x
                     << (v.empty() ? "" : " (first is " + std::to_string(v[0]) + ")");
}

}  // namespace moesys::conformance
