// NCCL collectives, messages, copies between tiers and stream ordering on the CUDA runtime, and the collective
// timeout: a rank that issues one collective more than its peers ends with a clear error, not a hang.
#include <gtest/gtest.h>

#include <cstring>

#include "exec/cuda/tests/cuda_test_util.hpp"
#include "model/ops.hpp"
#include "model/tensors.hpp"

namespace moesys::exec::cuda {

namespace ops = moesys::model::ops;
namespace {

using core::streams::kComm;
using core::streams::kComm2;
using core::streams::kCompute;

std::vector<float> get(core::Runtime& rt, const core::Buffer& b, std::int64_t n) {
  return model::download_floats(rt, b, n);
}
void put(core::Runtime& rt, const core::Buffer& b, const std::vector<float>& v) {
  model::upload(rt, b, v.data(), v.size() * 4);
}

TEST(CudaCollectives, AllReduceAllGatherReduceScatter) {
  auto& rt = testing::gpu();
  const int P = rt.world_size(), r = rt.rank();
  const auto world = core::Group::world(P);
  auto a = rt.alloc(core::Tier::hbm, 4 * 8 * P, "t"), b = rt.alloc(core::Tier::hbm, 4 * 8 * P, "t");
  std::vector<float> v(std::size_t(8 * P));
  for (int i = 0; i < 8 * P; ++i) v[std::size_t(i)] = float(r + i);
  put(rt, a, v);
  rt.wait(rt.all_reduce(kComm, world, a, 4 * 8 * P, core::Dtype::fp32, core::CollectiveAlgo::automatic));
  const auto sum = get(rt, a, 8 * P);
  for (int i = 0; i < 8 * P; ++i) EXPECT_EQ(sum[std::size_t(i)], float(P * (P - 1) / 2 + P * i));
  rt.wait(rt.reduce_scatter(kComm, world, a, b, 4 * 8 * P, core::Dtype::fp32, core::CollectiveAlgo::automatic));
  const auto part = get(rt, b, 8);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(part[std::size_t(i)], float(P) * sum[std::size_t(8 * r + i)]);
  for (int i = 0; i < 8; ++i) v[std::size_t(i)] = float(100 * r + i);
  put(rt, a, v);
  rt.wait(rt.all_gather(kComm, world, a, b, 4 * 8 * P, core::CollectiveAlgo::automatic));
  const auto all = get(rt, b, 8 * P);
  for (int s = 0; s < P; ++s)
    for (int i = 0; i < 8; ++i) EXPECT_EQ(all[std::size_t(s * 8 + i)], float(100 * s + i));
  rt.free(a), rt.free(b);
}

TEST(CudaCollectives, FlatAndHierarchicalAllToAllAreBitwiseIdentical) {
  auto& rt = testing::gpu();
  const int P = rt.world_size(), r = rt.rank();
  const auto world = core::Group::world(P);
  auto count = [](int s, int d) { return std::uint64_t((s * 7 + d * 3) % 11 + 1); };  // uneven sizes
  std::vector<std::uint64_t> sb(static_cast<std::size_t>(P)), rb(static_cast<std::size_t>(P));
  std::uint64_t st = 0, rtot = 0;
  for (int d = 0; d < P; ++d)
    sb[std::size_t(d)] = 4 * count(r, d), rb[std::size_t(d)] = 4 * count(d, r), st += sb[std::size_t(d)],
    rtot += rb[std::size_t(d)];
  auto send = rt.alloc(core::Tier::hbm, st, "t");
  auto flat = rt.alloc(core::Tier::hbm, rtot, "t"), hier = rt.alloc(core::Tier::hbm, rtot, "t");
  std::vector<float> s;
  for (int d = 0; d < P; ++d)
    for (std::uint64_t i = 0; i < count(r, d); ++i) s.push_back(float(r * 1000 + d * 100) + float(i));
  put(rt, send, s);
  rt.wait(rt.all_to_all(kComm, world, send, sb, flat, rb, core::CollectiveAlgo::direct));
  rt.wait(rt.all_to_all(kComm, world, send, sb, hier, rb, core::CollectiveAlgo::hierarchical));
  const auto f = get(rt, flat, std::int64_t(rtot / 4)), h = get(rt, hier, std::int64_t(rtot / 4));
  ASSERT_EQ(0, std::memcmp(f.data(), h.data(), rtot));
  std::size_t at = 0;
  for (int src = 0; src < P; ++src)
    for (std::uint64_t i = 0; i < count(src, r); ++i) EXPECT_EQ(f[at++], float(src * 1000 + r * 100) + float(i));
  rt.free(send), rt.free(flat), rt.free(hier);
}

TEST(CudaCollectives, CrossedSendRecvOnTwoStreams) {
  auto& rt = testing::gpu();
  const int P = rt.world_size(), r = rt.rank(), to = (r + 1) % P, from = (r + P - 1) % P;
  const std::int64_t n = 1 << 20;  // 4 MiB: beyond NCCL's buffering, so a serialised pair would deadlock
  auto out = rt.alloc(core::Tier::hbm, model::f32_bytes(n), "t"),
       in = rt.alloc(core::Tier::hbm, model::f32_bytes(n), "t");
  put(rt, out, std::vector<float>(std::size_t(n), float(r + 1)));
  const auto e1 = rt.send(kComm, to, out, model::f32_bytes(n), 7);
  const auto e2 = rt.recv(kComm2, from, in, model::f32_bytes(n), 7);
  rt.wait(e2);
  rt.wait(e1);
  const auto got = get(rt, in, n);
  EXPECT_EQ(got.front(), float(from + 1));
  EXPECT_EQ(got.back(), float(from + 1));
  rt.free(out), rt.free(in);
}

TEST(CudaCollectives, CopiesBetweenTiersAndStreamOrder) {
  auto& rt = testing::gpu();
  const std::int64_t n = 1 << 18;
  auto host = rt.alloc(core::Tier::dram, model::f32_bytes(n), "t"),
       back = rt.alloc(core::Tier::dram, model::f32_bytes(n), "t");
  auto dev = rt.alloc(core::Tier::hbm, model::f32_bytes(n), "t"),
       ssd = rt.alloc(core::Tier::ssd, model::f32_bytes(n), "t");
  ASSERT_NE(host.data, nullptr);  // pinned host memory is host-addressable
  ASSERT_EQ(dev.data, nullptr);   // device memory is not
  for (std::int64_t i = 0; i < n; ++i) host.as<float>()[i] = float(i);
  // SSD round trip, then H2D -> kernel on another stream (ordered by stream_wait) -> D2H.
  rt.wait(rt.copy(core::streams::kNvme, ssd, host, model::f32_bytes(n)));
  std::memset(host.data, 0, model::f32_bytes(n));
  const auto read = rt.copy(core::streams::kNvme, host, ssd, model::f32_bytes(n));
  rt.stream_wait(core::streams::kH2D, read);
  const auto up = rt.copy(core::streams::kH2D, dev, host, model::f32_bytes(n));
  rt.stream_wait(kCompute, up);
  const auto scaled = rt.compute(kCompute, ops::scale(dev, n, 2.0), "scale");
  rt.stream_wait(core::streams::kD2H, scaled);
  rt.wait(rt.copy(core::streams::kD2H, back, dev, model::f32_bytes(n)));
  for (std::int64_t i = 0; i < n; i += 4097) ASSERT_EQ(back.as<float>()[i], 2.f * float(i));
  for (auto* b : {&host, &back, &dev, &ssd}) rt.free(*b);
  EXPECT_EQ(rt.memory().in_use_bytes(core::Tier::hbm), 0u);
  bool copy_span = false;
  for (const auto& sp : rt.spans()) copy_span |= sp.name == "copy dram->hbm" && sp.end_s >= sp.start_s;
  EXPECT_TRUE(copy_span);
}

// Registered under mpirun -np 2 with MOESYS_EXEC_TIMEOUT_S=10: rank 0 issues one all-reduce more than rank 1.
// With the MPI pre-check off, only the NCCL watchdog can notice; it must abort and name the collective.
TEST(CudaFaults, ExtraCollectiveTimesOutWithAClearError) {
  if (testing::world_size() < 2) GTEST_SKIP() << "needs 2 ranks";
  CudaOptions o;
  o.check_collectives = false;
  auto rt = std::make_unique<CudaRuntime>(testing::test_cluster(testing::world_size()), o);
  const auto world = core::Group::world(rt->world_size());
  auto b = rt->alloc(core::Tier::hbm, 4096, "t");
  rt->wait(rt->all_reduce(kComm, world, b, 4096, core::Dtype::fp32, core::CollectiveAlgo::automatic));
  if (rt->rank() == 0) {
    try {
      rt->wait(rt->all_reduce(kComm, world, b, 4096, core::Dtype::fp32, core::CollectiveAlgo::automatic));
      ADD_FAILURE() << "the unmatched all-reduce completed";
    } catch (const core::RuntimeFailure& e) {
      EXPECT_NE(std::string(e.what()).find("did not complete within"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("all_reduce #1"), std::string::npos) << e.what();
    }
  }
  rt.reset();  // bounded too: finalisation of a communicator whose peer aborted times out and aborts
  MPI_Barrier(MPI_COMM_WORLD);
}

}  // namespace
}  // namespace moesys::exec::cuda
