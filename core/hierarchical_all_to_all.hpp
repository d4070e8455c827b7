#pragma once
// The resource-aware (hierarchical) all-to-all of the MoESys paper as the steps one member executes, the same on
// every runtime: the CPU runtime (exec/cpu/hierarchical_a2a.cpp) and the CUDA runtime (exec/cuda) move these blocks,
// the simulator (sim/collectives/hierarchical_all_to_all.cpp) turns every member's blocks into its two stages.
// A group of N nodes with P members each, in node-major order: member j is (node j / P, local index j % P).
//   size exchange, inside the node: member (a, l) tells local peer l2 what it has for (m, l2), every node m;
//   step 1, inside the node: (a, l) sends local peer l2 everything it has for (m, l2), every node m;
//   step 2, across nodes among members of one local index (one rail): (a, l) sends (m, l) what it gathered for
//   (m, l) from its local peers.
// Inter-node messages become P times fewer and larger, and no byte crosses a rail-optimised fabric's spine.
#include <cstddef>
#include <vector>

namespace moesys::core {

/// Members per node when the group (the node of each member, in group order) is equal blocks of consecutive
/// members, one block per node in increasing node order: the layout the steps assume. 0 otherwise; every runtime
/// then runs a direct all-to-all.
inline int hierarchical_per_node(const std::vector<int>& member_nodes) {
  const auto n = static_cast<int>(member_nodes.size());
  const auto Z = [](int v) { return static_cast<std::size_t>(v); };
  int per_node = 0;
  while (per_node < n && member_nodes[Z(per_node)] == member_nodes[0]) ++per_node;
  if (per_node == 0 || n % per_node != 0) return 0;
  for (int i = 0; i < n; ++i) {
    const int block_start = i - i % per_node;
    if (member_nodes[Z(i)] != member_nodes[Z(block_start)]) return 0;
    if (i == block_start && i > 0 && member_nodes[Z(i)] <= member_nodes[Z(i - 1)]) return 0;
  }
  return per_node;
}

/// A contiguous block a member moves in one step: to or from `peer` (a local index in step 1, a node along the rail
/// in step 2), at `offset` in its buffer. `Bytes` is std::uint64_t on real runtimes, double in the simulator.
template <typename Bytes>
struct A2aBlock {
  int peer = 0;
  Bytes offset{}, bytes{};
};

/// One member's blocks, empty ones left out. Blocks to or from one peer are listed in the order they travel, so a
/// transport that matches messages between a pair in issue order (NCCL) pairs them without tags.
template <typename Bytes>
struct HierarchicalA2aSteps {
  std::vector<A2aBlock<Bytes>> intra_send;  // from the send buffer: by local peer l2, then node m
  std::vector<A2aBlock<Bytes>> intra_recv;  // into the staging buffer [l'][m]: by local peer l', then node m
  std::vector<A2aBlock<Bytes>> inter_send;  // from the staging buffer: by node m, then the local peer l' it came from
  std::vector<A2aBlock<Bytes>> inter_recv;  // into the receive buffer (group order): by node m, then local index
  Bytes staging_bytes{};                    // what step 1 gathers
};

/// What a member tells its local peers in the size exchange: out[l2 * N + m] = send_bytes[m * P + l2], the bytes
/// it has for member (m, l2).
template <typename Bytes>
std::vector<Bytes> hierarchical_sizes_out(const std::vector<Bytes>& send_bytes, int nodes, int per_node) {
  const auto Z = [](int v) { return static_cast<std::size_t>(v); };
  std::vector<Bytes> out(Z(nodes * per_node));
  for (int l2 = 0; l2 < per_node; ++l2)
    for (int m = 0; m < nodes; ++m) out[Z(l2 * nodes + m)] = send_bytes[Z(m * per_node + l2)];
  return out;
}

/// The steps of one member from its send and receive sizes (group order) and what the size exchange brought:
/// sizes_in[l * N + m], the bytes local peer l has for (m, this member's local index).
template <typename Bytes>
HierarchicalA2aSteps<Bytes> hierarchical_steps(const std::vector<Bytes>& send_bytes, const std::vector<Bytes>& recv_bytes,
                                               const std::vector<Bytes>& sizes_in, int nodes, int per_node) {
  const auto Z = [](int v) { return static_cast<std::size_t>(v); };
  const int N = nodes, P = per_node;
  HierarchicalA2aSteps<Bytes> s;
  auto offsets = [](const std::vector<Bytes>& sizes) {  // where each block starts when they are packed in order
    std::vector<Bytes> at(sizes.size());
    Bytes sum{};
    for (std::size_t i = 0; i < sizes.size(); ++i) at[i] = sum, sum += sizes[i];
    return at;
  };
  const std::vector<Bytes> send_at = offsets(send_bytes), recv_at = offsets(recv_bytes), staged_at = offsets(sizes_in);
  auto add = [](std::vector<A2aBlock<Bytes>>& list, int peer, Bytes offset, Bytes bytes) {
    if (bytes > Bytes{}) list.push_back({peer, offset, bytes});
  };
  for (int l2 = 0; l2 < P; ++l2)
    for (int m = 0; m < N; ++m) add(s.intra_send, l2, send_at[Z(m * P + l2)], send_bytes[Z(m * P + l2)]);
  for (int l = 0; l < P; ++l)
    for (int m = 0; m < N; ++m) add(s.intra_recv, l, staged_at[Z(l * N + m)], sizes_in[Z(l * N + m)]);
  for (int m = 0; m < N; ++m)
    for (int l = 0; l < P; ++l) {
      add(s.inter_send, m, staged_at[Z(l * N + m)], sizes_in[Z(l * N + m)]);
      add(s.inter_recv, m, recv_at[Z(m * P + l)], recv_bytes[Z(m * P + l)]);
    }
  for (const Bytes& b : sizes_in) s.staging_bytes += b;
  return s;
}

}  // namespace moesys::core
