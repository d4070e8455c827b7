#include "policies/training/moe_exchange.hpp"

#include <algorithm>
#include <bit>

namespace moesys::policies::training {

using I = std::int64_t;

I MoeExchange::part(I total, int chunk, int chunks) {
  // Called for every (peer, expert, chunk) of every all-to-all (a tenth of a 4096-GPU simulation's first seconds
  // went to the divisions): chunk counts are small powers of two in practice, where a shift and a mask give the
  // same quotient and remainder for the non-negative counts.
  if (total >= 0 && (chunks & (chunks - 1)) == 0) {
    const int shift = std::countr_zero(static_cast<unsigned>(chunks));
    return (total >> shift) + (chunk < (total & (chunks - 1)) ? 1 : 0);
  }
  return total / chunks + (chunk < total % chunks ? 1 : 0);
}

void MoeExchange::finish() {
  const auto C = static_cast<std::size_t>(chunks);
  expert_rows.assign(C, std::vector<I>(static_cast<std::size_t>(local), 0));
  send_offset.assign(C, 0);
  recv_offset.assign(C, 0);
  rows_sent = rows_recv = 0;
  for (int c = 0; c < chunks; ++c) {
    send_offset[static_cast<std::size_t>(c)] = rows_sent;
    recv_offset[static_cast<std::size_t>(c)] = rows_recv;
    for (int p = 0; p < peers; ++p)
      for (int e = 0; e < local; ++e) {
        const auto i = static_cast<std::size_t>(p * local + e);
        const I s = part(send_pe[i], c, chunks), r = part(recv_pe[i], c, chunks);
        expert_rows[static_cast<std::size_t>(c)][static_cast<std::size_t>(e)] += r;
        rows_sent += s;
        rows_recv += r;
      }
  }
}

std::vector<std::int32_t> MoeExchange::slot_table() const {
  const int blocks = peers * local, gate_experts = experts > 0 ? experts : blocks;
  // Rows of chunk c for block (p, e) start at send_offset[c] + rows of earlier blocks of the same chunk.
  std::vector<std::vector<I>> block_start(static_cast<std::size_t>(chunks), std::vector<I>(static_cast<std::size_t>(blocks)));
  for (int c = 0; c < chunks; ++c) {
    I row = send_offset[static_cast<std::size_t>(c)];
    for (int i = 0; i < blocks; ++i) {
      block_start[static_cast<std::size_t>(c)][static_cast<std::size_t>(i)] = row;
      row += part(send_pe[static_cast<std::size_t>(i)], c, chunks);
    }
  }
  auto row_of = [&](int i, I offset) {  // the send row of a block's offset-th row
    I start = 0;
    for (int c = 0; c < chunks; ++c) {
      const I n = part(send_pe[static_cast<std::size_t>(i)], c, chunks);
      if (offset < start + n) return block_start[static_cast<std::size_t>(c)][static_cast<std::size_t>(i)] + offset - start;
      start += n;
    }
    return I{-1};
  };
  std::vector<std::int32_t> table(static_cast<std::size_t>(I{gate_experts} * capacity), -1);
  for (int e = 0; e < gate_experts; ++e) {
    const std::vector<std::pair<int, I>> whole{{e, send_pe[static_cast<std::size_t>(e)]}};
    I pos = 0;
    for (const auto& [block, rows] : pieces.empty() ? whole : pieces[static_cast<std::size_t>(e)])
      for (I r = 0; r < rows && pos < capacity; ++r, ++pos)
        table[static_cast<std::size_t>(I{e} * capacity + pos)] = static_cast<std::int32_t>(row_of(block, r));
  }
  return table;
}

void MoeExchange::regroup_indices(std::vector<std::int32_t>& forward_index,
                                  std::vector<std::int32_t>& backward_index) const {
  forward_index.assign(static_cast<std::size_t>(rows_recv), -1);
  backward_index.assign(static_cast<std::size_t>(rows_recv), -1);
  for (int c = 0; c < chunks; ++c) {
    // Start of (p, e) in the chunk's peer-major order.
    std::vector<I> peer_major(static_cast<std::size_t>(peers * local));
    I at = recv_offset[static_cast<std::size_t>(c)];
    for (int p = 0; p < peers; ++p)
      for (int e = 0; e < local; ++e) {
        peer_major[static_cast<std::size_t>(p * local + e)] = at;
        at += part(recv_pe[static_cast<std::size_t>(p * local + e)], c, chunks);
      }
    I out = recv_offset[static_cast<std::size_t>(c)];
    for (int e = 0; e < local; ++e)
      for (int p = 0; p < peers; ++p) {
        const auto i = static_cast<std::size_t>(p * local + e);
        const I n = part(recv_pe[i], c, chunks);
        for (I r = 0; r < n; ++r) {
          forward_index[static_cast<std::size_t>(out + r)] = static_cast<std::int32_t>(peer_major[i] + r);
          backward_index[static_cast<std::size_t>(peer_major[i] + r)] = static_cast<std::int32_t>(out + r);
        }
        out += n;
      }
  }
}

namespace {
/// Bytes per peer of chunk c of a [peer x local] matrix of rows. Every rank calls it for every peer of every
/// all-to-all, so a whole number of bytes per row (the usual case) is multiplied in integers: the same product as
/// in doubles while it stays below 2^53.
std::vector<std::uint64_t> chunk_bytes(const std::vector<I>& per_block, int peers, int local, int c, int chunks,
                                       double row_bytes) {
  const auto whole = static_cast<std::uint64_t>(row_bytes);
  const bool integral = row_bytes >= 0 && static_cast<double>(whole) == row_bytes;
  const std::uint64_t exact_rows = whole > 0 ? (std::uint64_t{1} << 53) / whole : 0;
  std::vector<std::uint64_t> b(static_cast<std::size_t>(peers));
  for (int p = 0; p < peers; ++p) {
    std::uint64_t rows = 0;
    for (int e = 0; e < local; ++e)
      rows += static_cast<std::uint64_t>(MoeExchange::part(per_block[static_cast<std::size_t>(p * local + e)], c, chunks));
    b[static_cast<std::size_t>(p)] = integral && rows < exact_rows
                                         ? rows * whole
                                         : static_cast<std::uint64_t>(static_cast<double>(rows) * row_bytes);
  }
  return b;
}
}  // namespace

std::vector<std::uint64_t> MoeExchange::send_bytes(int c, double row_bytes) const {
  return chunk_bytes(send_pe, peers, local, c, chunks, row_bytes);
}

std::vector<std::uint64_t> MoeExchange::recv_bytes(int c, double row_bytes) const {
  return chunk_bytes(recv_pe, peers, local, c, chunks, row_bytes);
}

std::vector<std::int64_t> matrix_with_sums(const std::vector<std::int64_t>& row_sums,
                                           const std::vector<std::int64_t>& col_sums) {
  std::vector<I> m(row_sums.size() * col_sums.size(), 0);
  std::vector<I> rows = row_sums, cols = col_sums;
  std::size_t i = 0, j = 0;
  while (i < rows.size() && j < cols.size()) {
    const I v = std::min(rows[i], cols[j]);
    m[i * cols.size() + j] += v;
    rows[i] -= v;
    cols[j] -= v;
    if (rows[i] == 0) ++i;
    else ++j;
  }
  // Totals that disagree (they should not): the rest of a row goes to its last column.
  for (std::size_t r = 0; r < rows.size(); ++r)
    if (rows[r] > 0 && !cols.empty()) m[r * cols.size() + cols.size() - 1] += rows[r];
  return m;
}

}  // namespace moesys::policies::training
