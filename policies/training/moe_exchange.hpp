#pragma once
// The row layout of one MoE layer's token exchange on one rank. Rows travel in `chunks` all-to-alls; inside a
// chunk they are ordered peer by peer and, for each peer, local expert by local expert:
//   send buffer   [chunk][destination peer][its local expert][rows]
//   recv buffer   [chunk][source peer][my local expert][rows]
//   expert input  [chunk][my local expert][source peer][rows]   (what the expert GEMMs read)
// Each (peer, expert) block is split over the chunks as evenly as possible. The same layout serves the real
// runtimes (counts from the gate and the count exchange) and the simulator (counts from the routing plan).
#include <cstdint>
#include <utility>
#include <vector>

namespace moesys::policies::training {

struct MoeExchange {
  int peers = 0, local = 0, chunks = 1;
  std::int64_t capacity = 0;             // rows one expert accepts from one sender (the gate's slot stride)
  int experts = 0;                       // the gate's experts; 0: peers x local (no spare slots)
  /// With expert replicas (local counts the spare slots too): per gate expert, the (peer x local + slot, rows)
  /// blocks its rows are split into, in the order of the gate's slots. Empty: expert e goes whole to block e.
  std::vector<std::vector<std::pair<int, std::int64_t>>> pieces;
  std::vector<std::int64_t> send_pe;     // [peer * local + e]: rows I send to expert e of peer
  std::vector<std::int64_t> recv_pe;     // [peer * local + e]: rows I receive from peer for my expert e
  // Derived by finish() (the rows per chunk and peer are not kept: every rank keeps one exchange per MoE layer
  // in flight, and [chunk][peer] tables of every rank grow with the square of the cluster; send_bytes and
  // recv_bytes sum them from send_pe and recv_pe when a chunk's all-to-all is issued):
  std::vector<std::int64_t> send_offset, recv_offset;            // [chunk] first row of the chunk
  std::vector<std::vector<std::int64_t>> expert_rows;            // [chunk][e]
  std::int64_t rows_sent = 0, rows_recv = 0;
  /// The all-gather dispatcher: rows arrive expert-major (no regroup) and the experts' outputs stay so; on real
  /// runtimes, every slot of the group's tokens -> its row here, or -1 (another member's expert, or dropped).
  bool expert_major = false;
  std::vector<std::int32_t> gathered_rows;

  static std::int64_t part(std::int64_t total, int chunk, int chunks);
  void finish();
  /// The gate's slot e*capacity + pos -> row of the send buffer (-1: not sent). Size experts * capacity.
  std::vector<std::int32_t> slot_table() const;
  /// Expert-major row i <- recv row forward_index[i]; recv (peer-major) row j <- expert-major row backward_index[j].
  void regroup_indices(std::vector<std::int32_t>& forward_index, std::vector<std::int32_t>& backward_index) const;
  /// Byte sizes per peer of chunk c: its rows to (from) each peer, over the peer's (my) local experts, times row_bytes.
  std::vector<std::uint64_t> send_bytes(int c, double row_bytes) const;
  std::vector<std::uint64_t> recv_bytes(int c, double row_bytes) const;
};

/// A (peer x local expert) matrix with the given row and column sums (north-west corner rule): how the
/// simulator spreads the routing plan's per-peer and per-expert totals when it has no per-pair counts.
std::vector<std::int64_t> matrix_with_sums(const std::vector<std::int64_t>& row_sums,
                                           const std::vector<std::int64_t>& col_sums);

}  // namespace moesys::policies::training
