#pragma once
// Checks and defaults that every real runtime (CPU and CUDA) applies the same way before touching MPI, BLAS or
// the GPU, so that a bad call fails with the same message on both.
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/runtime.hpp"

namespace moesys::exec {

/// The run must not have more ranks than the cluster description has GPUs (one rank per GPU).
inline void check_ranks_fit(const core::ClusterSpec& spec, int ranks) {
  if (ranks > spec.total_gpus())
    throw core::InfeasibleError(std::to_string(ranks) + " ranks do not fit the cluster '" + spec.name + "' of " +
                                std::to_string(spec.total_gpus()) + " GPUs");
}

/// Where the SSD tier's files go when the caller names no directory: one per process.
inline std::string default_ssd_dir() {
  return (std::filesystem::temp_directory_path() / ("moesys-ssd-" + std::to_string(::getpid()))).string();
}

/// Validates all-to-all(v) sizes against the group and the buffers; returns the bytes this rank sends.
inline std::uint64_t check_all_to_all_sizes(const core::Group& group, const core::Buffer& send,
                                            const std::vector<std::uint64_t>& send_bytes, const core::Buffer& recv,
                                            const std::vector<std::uint64_t>& recv_bytes) {
  const auto n = static_cast<std::size_t>(group.size());
  if (send_bytes.size() != n || recv_bytes.size() != n)
    throw std::invalid_argument("all_to_all: " + std::to_string(send_bytes.size()) + " send and " +
                                std::to_string(recv_bytes.size()) + " receive sizes for a group of " +
                                std::to_string(n));
  const std::uint64_t total = std::accumulate(send_bytes.begin(), send_bytes.end(), std::uint64_t{0});
  const std::uint64_t total_recv = std::accumulate(recv_bytes.begin(), recv_bytes.end(), std::uint64_t{0});
  if (total > send.bytes || total_recv > recv.bytes)
    throw std::invalid_argument("all_to_all: sizes exceed the send or receive buffer");
  return total;
}

}  // namespace moesys::exec
