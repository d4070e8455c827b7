// The hierarchical all-to-all's steps (core/hierarchical_all_to_all.hpp): delivering every member's blocks through
// the two steps puts every byte where a direct all-to-all would, in group order.
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <vector>

#include "core/hierarchical_all_to_all.hpp"

namespace moesys::core {
namespace {

using Sizes = std::vector<std::uint64_t>;

TEST(HierarchicalAllToAll, TwoStepsDeliverWhatADirectExchangeWould) {
  // 3 nodes x 2 members; member i sends (i + 1) * 10 + j bytes to member j (some sizes 0).
  const int N = 3, P = 2, n = N * P;
  auto sent = [](int i, int j) -> std::uint64_t { return (i + j) % 4 == 0 ? 0 : std::uint64_t((i + 1) * 10 + j); };
  // Each byte is labelled by (source, destination, index); run the steps on every member with real buffers.
  using Byte = std::uint32_t;
  auto label = [](int i, int j, std::uint64_t k) { return Byte(i * 1000000 + j * 10000 + int(k)); };
  std::vector<std::vector<Byte>> send(n), staging(n), recv(n);
  std::vector<Sizes> send_bytes(n, Sizes(n)), recv_bytes(n, Sizes(n));
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      send_bytes[i][j] = sent(i, j), recv_bytes[j][i] = sent(i, j);
      for (std::uint64_t k = 0; k < sent(i, j); ++k) send[i].push_back(label(i, j, k));
    }
  std::vector<HierarchicalA2aSteps<std::uint64_t>> steps(n);
  for (int k = 0; k < n; ++k) {
    const int a = k / P, l = k % P;
    Sizes sizes_in(n);  // the size exchange: local peer lp's out[l * N + m]
    for (int lp = 0; lp < P; ++lp) {
      const Sizes out = hierarchical_sizes_out(send_bytes[a * P + lp], N, P);
      for (int m = 0; m < N; ++m) sizes_in[lp * N + m] = out[l * N + m];
    }
    steps[k] = hierarchical_steps(send_bytes[k], recv_bytes[k], sizes_in, N, P);
    staging[k].resize(steps[k].staging_bytes);
    std::uint64_t total = 0;
    for (auto b : recv_bytes[k]) total += b;
    recv[k].resize(total);
  }
  // Deliver: a pair's messages match in issue order, as NCCL's do.
  auto deliver = [&](bool rail) {
    for (int k = 0; k < n; ++k) {
      const int a = k / P, l = k % P;
      std::map<int, int> taken;  // per receiver: blocks from k consumed so far
      for (const auto& b : rail ? steps[k].inter_send : steps[k].intra_send) {
        const int to = rail ? b.peer * P + l : a * P + b.peer;
        const auto& list = rail ? steps[to].inter_recv : steps[to].intra_recv;
        const int from_peer = rail ? a : l;
        int seen = 0;
        for (const auto& r : list) {
          if (r.peer != from_peer) continue;
          if (seen++ != taken[to]) continue;
          ASSERT_EQ(r.bytes, b.bytes);
          const auto& src = rail ? staging[k] : send[k];
          auto& dst = rail ? recv[to] : staging[to];
          std::copy(src.begin() + b.offset, src.begin() + b.offset + b.bytes, dst.begin() + r.offset);
          break;
        }
        ++taken[to];
      }
    }
  };
  deliver(false);
  deliver(true);
  for (int j = 0; j < n; ++j) {
    std::vector<Byte> expected;
    for (int i = 0; i < n; ++i)
      for (std::uint64_t k = 0; k < sent(i, j); ++k) expected.push_back(label(i, j, k));
    EXPECT_EQ(recv[j], expected) << "member " << j;
  }
}

TEST(HierarchicalAllToAll, TheLayoutIsEqualNodeBlocksInNodeOrder) {
  EXPECT_EQ(hierarchical_per_node({0, 0, 1, 1, 2, 2}), 2);
  EXPECT_EQ(hierarchical_per_node({3, 5}), 1);                // one member per node
  EXPECT_EQ(hierarchical_per_node({4, 4, 4}), 3);             // one node
  EXPECT_EQ(hierarchical_per_node({0, 0, 1}), 0);             // unequal blocks
  EXPECT_EQ(hierarchical_per_node({0, 1, 0, 1}), 0);          // interleaved
  EXPECT_EQ(hierarchical_per_node({1, 1, 0, 0}), 0);          // nodes out of order
  EXPECT_EQ(hierarchical_per_node({0, 0, 1, 1, 1, 1}), 0);    // a node twice the size
  EXPECT_EQ(hierarchical_per_node({}), 0);
}

TEST(HierarchicalAllToAll, EmptyBlocksAreLeftOut) {
  const Sizes none(4, 0);
  const auto steps = hierarchical_steps(none, none, none, 2, 2);
  EXPECT_TRUE(steps.intra_send.empty() && steps.intra_recv.empty() && steps.inter_send.empty() &&
              steps.inter_recv.empty());
  EXPECT_EQ(steps.staging_bytes, 0u);
}

}  // namespace
}  // namespace moesys::core
