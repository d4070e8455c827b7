#pragma once
// Building blocks of the small programs the simulator's tests run: generated clusters and square GEMMs.
#include <cstdint>

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

}  // namespace moesys::test
