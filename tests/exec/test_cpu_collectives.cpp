// Collectives of the CPU runtime on 4 ranks: contents, and flat vs hierarchical all-to-all bitwise.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "exec_test_util.hpp"

namespace moesys::exec {
namespace {

using core::streams::kComm;

TEST(CpuCollectives, AllReduceAllGatherReduceScatter) {
  auto rt = testing::make_runtime();
  const int P = rt->world_size(), r = rt->rank();
  const auto world = core::Group::world(P);
  auto a = rt->alloc(core::Tier::hbm, 4 * 8 * P, "t"), b = rt->alloc(core::Tier::hbm, 4 * 8 * P, "t");
  for (int i = 0; i < 8 * P; ++i) a.as<float>()[i] = float(r + i);
  rt->wait(rt->all_reduce(kComm, world, a, 4 * 8 * P, core::Dtype::fp32, core::CollectiveAlgo::automatic));
  for (int i = 0; i < 8 * P; ++i) EXPECT_EQ(a.as<float>()[i], float(P * (P - 1) / 2 + P * i));
  rt->wait(rt->reduce_scatter(kComm, world, a, b, 4 * 8 * P, core::Dtype::fp32, core::CollectiveAlgo::automatic));
  for (int i = 0; i < 8; ++i) EXPECT_EQ(b.as<float>()[i], float(P) * a.as<float>()[8 * r + i]);
  for (int i = 0; i < 8; ++i) a.as<float>()[i] = float(100 * r + i);
  rt->wait(rt->all_gather(kComm, world, a, b, 4 * 8 * P, core::CollectiveAlgo::automatic));
  for (int s = 0; s < P; ++s)
    for (int i = 0; i < 8; ++i) EXPECT_EQ(b.as<float>()[s * 8 + i], float(100 * s + i));
}

TEST(CpuCollectives, FlatAndHierarchicalAllToAllAreBitwiseIdentical) {
  auto rt = testing::make_runtime();
  const int P = rt->world_size(), r = rt->rank();
  const auto world = core::Group::world(P);
  // Uneven sizes: rank s sends (s * 7 + d * 3) % 11 + 1 floats to rank d.
  auto count = [](int s, int d) { return std::uint64_t((s * 7 + d * 3) % 11 + 1); };
  std::vector<std::uint64_t> sb(P), rb(P);
  std::uint64_t st = 0, rtot = 0;
  for (int d = 0; d < P; ++d) sb[d] = 4 * count(r, d), rb[d] = 4 * count(d, r), st += sb[d], rtot += rb[d];
  auto send = rt->alloc(core::Tier::hbm, st, "t");
  auto flat = rt->alloc(core::Tier::hbm, rtot, "t"), hier = rt->alloc(core::Tier::hbm, rtot, "t");
  float* s = send.as<float>();
  for (int d = 0, at = 0; d < P; ++d)
    for (std::uint64_t i = 0; i < count(r, d); ++i) s[at++] = float(r * 1000 + d * 100) + float(i);
  rt->wait(rt->all_to_all(kComm, world, send, sb, flat, rb, core::CollectiveAlgo::direct));
  rt->wait(rt->all_to_all(kComm, world, send, sb, hier, rb, core::CollectiveAlgo::hierarchical));
  ASSERT_EQ(0, std::memcmp(flat.data, hier.data, rtot));
  for (int src = 0, at = 0; src < P; ++src)
    for (std::uint64_t i = 0; i < count(src, r); ++i) EXPECT_EQ(flat.as<float>()[at++], float(src * 1000 + r * 100) + float(i));
  // The hierarchical run really took two steps (the span names it).
  bool seen = false;
  for (const auto& sp : rt->spans()) seen |= sp.name == "all_to_all/hierarchical";
  EXPECT_TRUE(seen);
}

TEST(CpuCollectives, SsdTierIsRealFiles) {
  auto rt = testing::make_runtime();
  auto host = rt->alloc(core::Tier::dram, 4096, "t"), back = rt->alloc(core::Tier::dram, 4096, "t");
  auto ssd = rt->alloc(core::Tier::ssd, 4096, "t");
  EXPECT_EQ(ssd.data, nullptr);
  for (int i = 0; i < 1024; ++i) host.as<float>()[i] = float(i * rt->rank());
  rt->wait(rt->copy(core::streams::kNvme, ssd, host, 4096));
  rt->wait(rt->copy(core::streams::kNvme, back, ssd, 4096));
  EXPECT_EQ(0, std::memcmp(host.data, back.data, 4096));
  EXPECT_EQ(rt->memory().in_use_bytes(core::Tier::ssd), 4096u);
  rt->free(ssd);
  EXPECT_EQ(rt->memory().in_use_bytes(core::Tier::ssd), 0u);
}

TEST(CpuCollectives, CrossedSendRecvOnTwoStreamsDoNotDeadlock) {
  auto rt = testing::make_runtime();
  const int P = rt->world_size(), r = rt->rank();
  if (P < 2) GTEST_SKIP();
  const int peer = r ^ 1;
  if (peer >= P) return;
  const std::uint64_t bytes = 1 << 20;  // large enough for a rendezvous protocol
  auto a = rt->alloc(core::Tier::hbm, bytes, "t"), b = rt->alloc(core::Tier::hbm, bytes, "t");
  std::memset(a.data, r + 1, bytes);
  auto e1 = rt->send(kComm, peer, a, bytes, 7);
  auto e2 = rt->recv(core::streams::kComm2, peer, b, bytes, 7);
  rt->wait(e1);
  rt->wait(e2);
  EXPECT_EQ(static_cast<unsigned char*>(b.data)[bytes - 1], peer + 1);
}

}  // namespace
}  // namespace moesys::exec
