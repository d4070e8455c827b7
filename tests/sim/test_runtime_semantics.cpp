// The simulated runtime's contract (core/runtime.hpp): stream order, overlap across streams, stream_wait,
// point-to-point, memory accounting, and clear failures instead of hangs.
#include <gtest/gtest.h>

#include "core/error.hpp"
#include "sim/compute_model.hpp"
#include "sim/simulation.hpp"

using namespace moesys;

namespace {

core::ClusterSpec one_node() {
  core::ClusterGeneratorOptions o;
  o.nodes = 1;
  return core::generate_cluster(o);
}

core::GemmOp big_gemm() {
  core::GemmOp g;
  g.m = g.n = g.k = 8192;
  g.dtype = core::Dtype::bf16;
  return g;
}

double gemm_seconds() {
  return sim::kernel_cost(big_gemm(), one_node().node.gpu, core::default_calibration()).seconds;
}

}  // namespace

TEST(RuntimeSemantics, KernelsOnOneStreamRunInOrder) {
  double elapsed = 0;
  sim::simulate(one_node(), 1, [&](core::Runtime& rt) {
    rt.compute(core::streams::kCompute, big_gemm(), "a");
    auto e = rt.compute(core::streams::kCompute, big_gemm(), "b");
    rt.wait(e);
    elapsed = rt.now_s();
  });
  EXPECT_NEAR(elapsed, 2 * gemm_seconds(), 1e-9);
}

TEST(RuntimeSemantics, CopyOverlapsComputeOnAnotherStream) {
  const std::uint64_t bytes = 1ull << 30;
  double elapsed = 0, copy_alone = 0;
  sim::simulate(one_node(), 1, [&](core::Runtime& rt) {
    core::Buffer host = rt.alloc(core::Tier::dram, bytes, "weights");
    core::Buffer dev = rt.alloc(core::Tier::hbm, bytes, "weights");
    double t0 = rt.now_s();
    rt.wait(rt.copy(core::streams::kH2D, dev, host, bytes));
    copy_alone = rt.now_s() - t0;
    t0 = rt.now_s();
    auto c = rt.copy(core::streams::kH2D, dev, host, bytes);
    auto k = rt.compute(core::streams::kCompute, big_gemm(), "gemm");
    rt.wait(c);
    rt.wait(k);
    elapsed = rt.now_s() - t0;
  });
  EXPECT_NEAR(elapsed, std::max(copy_alone, gemm_seconds()), 1e-6);
}

TEST(RuntimeSemantics, StreamWaitDelaysLaterWorkUntilTheEvent) {
  const std::uint64_t bytes = 1ull << 30;
  double elapsed = 0, copy_alone = 0;
  sim::simulate(one_node(), 1, [&](core::Runtime& rt) {
    core::Buffer host{1, core::Tier::dram, bytes, nullptr}, dev{2, core::Tier::hbm, bytes, nullptr};
    double t0 = rt.now_s();
    rt.wait(rt.copy(core::streams::kH2D, dev, host, bytes));
    copy_alone = rt.now_s() - t0;
    t0 = rt.now_s();
    auto c = rt.copy(core::streams::kH2D, dev, host, bytes);
    rt.stream_wait(core::streams::kCompute, c);  // the kernel needs the copied weights
    rt.wait(rt.compute(core::streams::kCompute, big_gemm(), "gemm"));
    elapsed = rt.now_s() - t0;
  });
  EXPECT_NEAR(elapsed, copy_alone + gemm_seconds(), 1e-6);
}

TEST(RuntimeSemantics, SendAndReceiveMeetAndMoveTheBytes) {
  double elapsed = 0;
  sim::simulate(one_node(), 2, [&](core::Runtime& rt) {
    core::Buffer b;
    const std::uint64_t bytes = 256ull << 20;
    if (rt.rank() == 0) rt.wait(rt.send(core::streams::kComm, 1, b, bytes, 7));
    if (rt.rank() == 1) {
      rt.wait(rt.recv(core::streams::kComm, 0, b, bytes, 7));
      elapsed = rt.now_s();
    }
  });
  const auto cal = core::default_calibration();
  const double bytes = 256.0 * (1 << 20);
  // One message on NCCL's point-to-point path: its rate (p2p_efficiency) and its ramp (p2p_half_bandwidth_bytes).
  EXPECT_NEAR(elapsed,
              cal.step_latency_s + bytes / (300e9 * cal.nvlink_efficiency * cal.p2p_efficiency *
                                            cal.message_efficiency(bytes, false, true)),
              1e-7);
}

TEST(RuntimeSemantics, MemoryLedgerTracksPeakPerTier) {
  auto result = sim::simulate(one_node(), 1, [&](core::Runtime& rt) {
    auto a = rt.alloc(core::Tier::hbm, 10ull << 30, "params");
    auto b = rt.alloc(core::Tier::hbm, 5ull << 30, "activations");
    rt.free(b);
    auto c = rt.alloc(core::Tier::hbm, 2ull << 30, "activations");
    (void)a;
    (void)c;
  });
  EXPECT_EQ(result.ranks[0].memory.peak_bytes(core::Tier::hbm), 15ull << 30);
  EXPECT_EQ(result.ranks[0].memory.in_use_bytes(core::Tier::hbm), 12ull << 30);
}

TEST(RuntimeSemantics, AllocationBeyondCapacityFailsWithTheNumbers) {
  try {
    sim::simulate(one_node(), 1, [&](core::Runtime& rt) { rt.alloc(core::Tier::hbm, 100ull << 30, "experts"); });
    FAIL() << "expected OutOfMemory";
  } catch (const core::OutOfMemory& e) {
    EXPECT_NE(std::string(e.what()).find("100.00 GiB for 'experts'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("capacity 80.00 GiB"), std::string::npos) << e.what();
  }
}

TEST(RuntimeSemantics, MissingCollectiveIsReportedAsDeadlockNotAHang) {
  try {
    sim::simulate(one_node(), 4, [&](core::Runtime& rt) {
      if (rt.rank() != 3)
        rt.wait(rt.all_reduce(core::streams::kComm, core::Group::world(4), {}, 1 << 20, core::Dtype::fp32));
    });
    FAIL() << "expected a deadlock report";
  } catch (const core::RuntimeFailure& e) {
    EXPECT_NE(std::string(e.what()).find("deadlock"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("3 of 4 ranks arrived"), std::string::npos) << e.what();
  }
}

TEST(RuntimeSemantics, RanksDisagreeingOnACollectiveFail) {
  try {
    sim::simulate(one_node(), 2, [&](core::Runtime& rt) {
      const std::uint64_t bytes = rt.rank() == 0 ? 1 << 20 : 2 << 20;
      rt.wait(rt.all_reduce(core::streams::kComm, core::Group::world(2), {}, bytes, core::Dtype::fp32));
    });
    FAIL() << "expected a disagreement";
  } catch (const core::RuntimeFailure& e) {
    EXPECT_NE(std::string(e.what()).find("disagree"), std::string::npos) << e.what();
  }
}

TEST(RuntimeSemantics, SameInputsGiveIdenticalSpans) {
  auto run = [] {
    return sim::simulate(one_node(), 8, [&](core::Runtime& rt) {
      std::vector<std::uint64_t> row(8, 3ull << 20);
      rt.wait(rt.all_to_all(core::streams::kComm, core::Group::world(8), {}, row, {}, row,
                            core::CollectiveAlgo::direct));
      rt.wait(rt.compute(core::streams::kCompute, big_gemm(), "gemm"));
    });
  };
  auto a = run();
  ASSERT_EQ(a.ranks.size(), 8u);
  EXPECT_EQ(a.ranks[5].spans.size(), 2u);
  EXPECT_GT(a.ranks[5].spans[1].start_s, 0);
}
