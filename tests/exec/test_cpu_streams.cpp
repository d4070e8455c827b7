// The CPU runtime's streams run concurrently: a copy on another stream runs while a GEMM runs (on its stream, after),
// GEMMs of two streams compute what one stream computes, failures on a worker come back to the host with their
// type, freed memory outlives the queued work that uses it and comes back zeroed, and collectives and messages of several streams match
// across ranks whatever order the streams' threads reach them in. An operation's on-ready hook (where a kernel takes
// its place in the machine's queue for a slot) runs once, when the operation becomes ready, before its body.
#include <cblas.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>
#include <thread>

#include "exec/cpu/stream_engine.hpp"
#include "model/ops.hpp"
#include "exec_test_util.hpp"

namespace moesys::exec {

namespace ops = moesys::model::ops;
namespace {

using core::streams::kComm;
using core::streams::kComm2;
using core::streams::kCompute;
using core::streams::kH2D;
using Clock = std::chrono::steady_clock;

core::GemmOp gemm(const core::Buffer& a, const core::Buffer& b, const core::Buffer& c, std::int64_t n) {
  core::GemmOp g;
  g.m = g.n = g.k = n;
  g.dtype = core::Dtype::fp32;
  g.a = a, g.b = b, g.c = c;
  return g;
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Wall time of `gemms` GEMMs on the compute stream and `copies` copies on `copy_stream`, issued together.
double run_pair(cpu::CpuRuntime& rt, const core::GemmOp& g, int gemms, const core::Buffer& dst, const core::Buffer& src,
                int copies, core::StreamId copy_stream) {
  rt.synchronize();
  const auto t = Clock::now();
  for (int i = 0; i < gemms; ++i) rt.compute(kCompute, g, "overlap:gemm");
  for (int i = 0; i < copies; ++i) rt.copy(copy_stream, dst, src, src.bytes);
  rt.synchronize();
  return seconds_since(t);
}

// Seconds during which a copy and a GEMM of `rt`'s spans ran at the same time (spans of one kind never overlap each
// other: one stream each, or both on one stream).
double copy_gemm_overlap_s(const cpu::CpuRuntime& rt) {
  double overlap = 0;
  for (const core::Span& g : rt.spans())
    if (g.name == "overlap:gemm")
      for (const core::Span& c : rt.spans())
        if (c.kind == core::SpanKind::copy)
          overlap += std::max(0.0, std::min(g.end_s, c.end_s) - std::max(g.start_s, c.start_s));
  return overlap;
}

// A copy on another stream runs while the GEMMs run; on the GEMMs' own stream, after them. What the runtime
// controls is that the two workers run at once, so the test reads the operations' spans, not wall times: on a
// machine whose cores other work holds, the two threads still share the time (their spans overlap) though the
// copy buys no wall time. The wall times are printed for information.
TEST(CpuStreams, CopyBesideAGemmRunsWhileTheGemmRuns) {
  auto rt = testing::make_runtime();
  const std::int64_t n = 768;
  auto a = rt->alloc(core::Tier::hbm, std::uint64_t(n * n) * 4, "t"),
       b = rt->alloc(core::Tier::hbm, std::uint64_t(n * n) * 4, "t"),
       c = rt->alloc(core::Tier::hbm, std::uint64_t(n * n) * 4, "t");
  const std::uint64_t copy_bytes = 64ull << 20;
  auto src = rt->alloc(core::Tier::dram, copy_bytes, "t"), dst = rt->alloc(core::Tier::hbm, copy_bytes, "t");
  std::memset(src.data, 1, copy_bytes);
  const core::GemmOp g = gemm(a, b, c, n);
  // A fixed amount of work (about 80 ms of GEMMs and 60 ms of copies on an idle 2-core machine), not one sized by
  // timing it: on a loaded machine every operation is slower, and the copies' worker must still find GEMMs queued
  // when it first gets a core.
  const int gemms = 8, copies = 6;
  const double in_sequence = run_pair(*rt, g, gemms, dst, src, copies, kCompute);
  EXPECT_EQ(copy_gemm_overlap_s(*rt), 0.0) << "operations of one stream ran at once";
  rt->clear_spans();
  const double overlapped = run_pair(*rt, g, gemms, dst, src, copies, kH2D);
  const double together = copy_gemm_overlap_s(*rt);
  std::printf(
      "overlap: %d GEMMs %lldx%lldx%lld and %d copies of %llu MiB: in sequence %.1f ms, on two streams %.1f ms "
      "(%.2fx), %.1f ms of it copying and computing at once\n",
      gemms, (long long)n, (long long)n, (long long)n, copies, (unsigned long long)(copy_bytes >> 20),
      in_sequence * 1e3, overlapped * 1e3, in_sequence / overlapped, together * 1e3);
  RecordProperty("in_sequence_ms", std::to_string(in_sequence * 1e3));
  RecordProperty("overlapped_ms", std::to_string(overlapped * 1e3));
  EXPECT_GT(together, 0.0) << "the copy stream waited for the compute stream";
  EXPECT_EQ(static_cast<unsigned char*>(dst.data)[copy_bytes - 1], 1);
}

// OpenBLAS is shared by the streams' threads (and keeps the thread count the program set): GEMMs issued on four
// streams at once give the bits that one stream gives.
TEST(CpuStreams, GemmsOnSeveralStreamsEqualOneStream) {
  auto rt = testing::make_runtime();
  const int threads = openblas_get_num_threads();
  openblas_set_num_threads(2);
  const std::int64_t n = 192;
  const std::uint64_t bytes = std::uint64_t(n * n) * 4;
  std::vector<core::Buffer> in, one, many;
  for (int i = 0; i < 8; ++i) {
    in.push_back(rt->alloc(core::Tier::hbm, bytes, "t"));
    for (std::int64_t j = 0; j < n * n; ++j) in.back().as<float>()[j] = float((j * 7 + i * 13) % 101) / 17.0f;
  }
  for (int i = 0; i < 4; ++i)
    one.push_back(rt->alloc(core::Tier::hbm, bytes, "t")), many.push_back(rt->alloc(core::Tier::hbm, bytes, "t"));
  for (int i = 0; i < 4; ++i) rt->compute(kCompute, gemm(in[2 * i], in[2 * i + 1], one[i], n), "gemm");
  rt->synchronize();
  for (int rep = 0; rep < 3; ++rep) {
    for (int i = 0; i < 4; ++i) rt->compute(core::StreamId(10 + i), gemm(in[2 * i], in[2 * i + 1], many[i], n), "gemm");
    rt->synchronize();
    for (int i = 0; i < 4; ++i) EXPECT_EQ(0, std::memcmp(one[i].data, many[i].data, bytes)) << "product " << i;
  }
  openblas_set_num_threads(threads);
}

// A stream's worker CPU time (what the machine probe charges to a waiting member's polling) counts that worker's
// work only: GEMMs on the compute stream add to it, the copy stream's worker stays near zero, an unused stream reads 0.
TEST(CpuStreams, WorkerCpuTimeCountsItsOwnStreamOnly) {
  auto rt = testing::make_runtime();
  const std::int64_t n = 256;
  const std::uint64_t bytes = std::uint64_t(n * n) * 4;
  auto a = rt->alloc(core::Tier::hbm, bytes, "t"), b = rt->alloc(core::Tier::hbm, bytes, "t"),
       c = rt->alloc(core::Tier::hbm, bytes, "t");
  rt->copy(kH2D, c, a, 64);
  rt->synchronize();
  const double compute_before = rt->stream_cpu_s(kCompute), copy_before = rt->stream_cpu_s(kH2D);
  for (int i = 0; i < 20; ++i) rt->compute(kCompute, gemm(a, b, c, n), "gemm");
  rt->synchronize();
  const double compute = rt->stream_cpu_s(kCompute) - compute_before, copy = rt->stream_cpu_s(kH2D) - copy_before;
  EXPECT_GT(compute, 1e-3) << "20 GEMMs of 2 x 256^3 flop (670 Mflop) ran on the compute worker";
  EXPECT_LT(copy, 0.1 * compute) << "the idle copy worker used CPU";
  EXPECT_EQ(rt->stream_cpu_s(kComm2), 0.0) << "a stream never used has no worker";
}

// A kernel that fails on its worker: the host sees std::invalid_argument at its next call into the runtime (the
// issue of the next operation if the worker failed first, else the wait), the operation queued behind it is
// skipped, and once reported the runtime runs new work again.
TEST(CpuStreams, FailureOnAWorkerComesBackWithItsType) {
  auto rt = testing::make_runtime();
  auto x = rt->alloc(core::Tier::hbm, 4096, "t");
  core::GemmOp no_operands;
  no_operands.m = no_operands.n = no_operands.k = 8;
  no_operands.dtype = core::Dtype::fp32;
  rt->compute(kCompute, no_operands, "bad");
  EXPECT_THROW(rt->wait(rt->compute(kCompute, ops::fill(x, 1024, 1.0), "fill")), std::invalid_argument);
  rt->synchronize();  // reported once
  EXPECT_EQ(x.as<float>()[0], 0.0f) << "work queued behind the failure ran";
  rt->wait(rt->compute(kCompute, ops::fill(x, 1024, 2.0), "fill"));
  EXPECT_EQ(x.as<float>()[1023], 2.0f);
}

// free() does not take memory away from work still queued: a copy behind a slow GEMM reads a source freed at once.
TEST(CpuStreams, FreedBufferOutlivesTheQueuedWorkThatUsesIt) {
  auto rt = testing::make_runtime();
  const std::int64_t n = 384;
  auto a = rt->alloc(core::Tier::hbm, std::uint64_t(n * n) * 4, "t"),
       b = rt->alloc(core::Tier::hbm, std::uint64_t(n * n) * 4, "t"),
       c = rt->alloc(core::Tier::hbm, std::uint64_t(n * n) * 4, "t");
  const std::uint64_t bytes = 8 << 20;  // large enough that the allocator returns it to the system on release
  auto src = rt->alloc(core::Tier::dram, bytes, "t"), dst = rt->alloc(core::Tier::hbm, bytes, "t");
  std::memset(src.data, 7, bytes);
  rt->compute(kCompute, gemm(a, b, c, n), "slow");
  rt->compute(kCompute, gemm(a, b, c, n), "slow");
  const core::Event copied = rt->copy(kCompute, dst, src, bytes);
  rt->free(src);
  EXPECT_EQ(rt->memory().in_use_bytes(core::Tier::dram), 0u) << "the ledger counts the buffer free at once";
  rt->wait(copied);
  const auto* d = static_cast<const unsigned char*>(dst.data);
  EXPECT_TRUE(d[0] == 7 && d[bytes / 2] == 7 && d[bytes - 1] == 7);
}

// Freed blocks are cached for reuse (no page faults on the issuing thread every micro-batch), but an allocation
// still starts zeroed, as on the CUDA runtime.
TEST(CpuStreams, AReusedBlockStartsZeroed) {
  auto rt = testing::make_runtime();
  const std::uint64_t bytes = 4 << 20;
  auto first = rt->alloc(core::Tier::hbm, bytes, "t");
  void* block = first.data;
  std::memset(first.data, 9, bytes);
  rt->free(first);
  rt->synchronize();
  auto second = rt->alloc(core::Tier::hbm, bytes, "t");
  EXPECT_EQ(second.data, block) << "the freed block of the same size is reused";
  const auto* d = static_cast<const unsigned char*>(second.data);
  EXPECT_TRUE(d[0] == 0 && d[bytes / 2] == 0 && d[bytes - 1] == 0);
  EXPECT_EQ(rt->memory().in_use_bytes(core::Tier::hbm), bytes);
}

// Two all-reduces of one group on two streams, each delayed on half of the ranks, so that the streams' threads
// start them in opposite orders on neighbouring ranks: each must still meet its own counterpart.
TEST(CpuStreamsAcrossRanks, CollectivesOfOneGroupOnTwoStreamsMatchPerStream) {
  auto rt = testing::make_runtime();
  const int P = rt->world_size(), r = rt->rank();
  const auto world = core::Group::world(P);
  const std::int64_t n = 256;
  auto a = rt->alloc(core::Tier::hbm, std::uint64_t(n * n) * 4, "t"),
       b = rt->alloc(core::Tier::hbm, std::uint64_t(n * n) * 4, "t"),
       c = rt->alloc(core::Tier::hbm, std::uint64_t(n * n) * 4, "t");
  auto x = rt->alloc(core::Tier::hbm, 4096, "t"), y = rt->alloc(core::Tier::hbm, 8192, "t");
  for (int rep = 0; rep < 4; ++rep) {
    for (int i = 0; i < 1024; ++i) x.as<float>()[i] = float(r + 1);
    for (int i = 0; i < 2048; ++i) y.as<float>()[i] = float(10 * (r + 1));
    const core::Event slow = rt->compute(kCompute, gemm(a, b, c, n), "slow");
    rt->stream_wait((r + rep) % 2 ? kComm : kComm2, slow);
    const core::Event ex = rt->all_reduce(kComm, world, x, 4096, core::Dtype::fp32, core::CollectiveAlgo::automatic);
    const core::Event ey = rt->all_reduce(kComm2, world, y, 8192, core::Dtype::fp32, core::CollectiveAlgo::automatic);
    rt->wait(ex);
    rt->wait(ey);
    EXPECT_EQ(x.as<float>()[1023], float(P * (P + 1) / 2)) << "round " << rep;
    EXPECT_EQ(y.as<float>()[2047], float(10 * P * (P + 1) / 2)) << "round " << rep;
  }
}

// Rank 2k sends two messages with one tag, the first delayed behind a GEMM on its stream; rank 2k+1 receives them
// on two streams, the second receive delayed the same way. So the second send and the first receive are posted
// first, and would meet if MPI matched them by tag alone: the n-th receive must get the n-th send.
TEST(CpuStreamsAcrossRanks, MessagesMatchInIssueOrderWhenTheFirstStartsLast) {
  auto rt = testing::make_runtime();
  const int P = rt->world_size(), r = rt->rank();
  const int peer = r ^ 1;
  if (peer >= P) GTEST_SKIP() << "needs a peer";
  const std::int64_t n = 512;  // ~10 ms: long beside starting a stream thread
  auto a = rt->alloc(core::Tier::hbm, std::uint64_t(n * n) * 4, "t"),
       b = rt->alloc(core::Tier::hbm, std::uint64_t(n * n) * 4, "t"),
       c = rt->alloc(core::Tier::hbm, std::uint64_t(n * n) * 4, "t");
  const std::uint64_t bytes = 1 << 16;
  auto first = rt->alloc(core::Tier::hbm, bytes, "t"), second = rt->alloc(core::Tier::hbm, bytes, "t");
  if (r % 2 == 0) {
    std::memset(first.data, 1, bytes);
    std::memset(second.data, 2, bytes);
    rt->stream_wait(kComm, rt->compute(kCompute, gemm(a, b, c, n), "slow"));
    rt->send(kComm, peer, first, bytes, 5);
    rt->send(kComm2, peer, second, bytes, 5);
  } else {
    rt->recv(kComm, peer, first, bytes, 5);
    rt->stream_wait(kComm2, rt->compute(kCompute, gemm(a, b, c, n), "slow"));
    rt->recv(kComm2, peer, second, bytes, 5);
  }
  rt->synchronize();
  if (r % 2 == 1) {
    EXPECT_EQ(static_cast<unsigned char*>(first.data)[bytes - 1], 1);
    EXPECT_EQ(static_cast<unsigned char*>(second.data)[bytes - 1], 2);
  }
}

TEST(StreamEngine, AnOperationIsReadyWhenItsStreamReachesItAndItsDependenciesHaveCompleted) {
  cpu::StreamEngine engine(Clock::now());
  std::mutex m;
  std::vector<std::string> log;
  auto note = [&](const std::string& what) {
    std::lock_guard lock(m);
    log.push_back(what);
  };
  // An idle stream with nothing to wait for: ready as it is issued, on the issuing thread.
  const auto host = std::this_thread::get_id();
  std::thread::id ready_on;
  const core::Event a = engine.submit(
      kCompute, [&] { std::this_thread::sleep_for(std::chrono::milliseconds(30)), note("a ends"); },
      [&] { ready_on = std::this_thread::get_id(), note("a ready"); });
  EXPECT_EQ(ready_on, host);
  // Behind `a` on its stream: ready once `a` ends. On another stream, waiting for `a`: the same.
  engine.submit(kCompute, [&] { note("b runs"); }, [&] { note("b ready"); });
  engine.stream_wait(kComm, a);
  engine.submit(kComm, [&] { note("c runs"); }, [&] { note("c ready"); });
  engine.synchronize();
  auto at = [&](const std::string& what) {
    const auto it = std::find(log.begin(), log.end(), what);
    EXPECT_EQ(std::count(log.begin(), log.end(), what), 1) << what;
    return it - log.begin();
  };
  EXPECT_LT(at("a ready"), at("a ends"));
  EXPECT_LT(at("a ends"), at("b ready"));
  EXPECT_LT(at("b ready"), at("b runs"));
  EXPECT_LT(at("a ends"), at("c ready"));
  EXPECT_LT(at("c ready"), at("c runs"));
}

TEST(StreamEngine, TheThreadThatCompletesTheLastDependencyMakesTheOperationReady) {
  // `b` goes to an idle stream while its dependency runs; `a`'s worker completes it and readies `b`, whether or not
  // `b`'s worker has taken `b` by then.
  for (int trial = 0; trial < 20; ++trial) {
    cpu::StreamEngine engine(Clock::now());
    std::thread::id completer, readied;
    std::atomic<bool> issued{false};
    const core::Event a = engine.submit(kCompute, [&] {
      while (!issued) std::this_thread::yield();  // `a` ends after `b` was issued
      std::this_thread::sleep_for(std::chrono::microseconds(trial * 50));
      completer = std::this_thread::get_id();
    });
    engine.stream_wait(kComm, a);
    engine.submit(kComm, [] {}, [&] { readied = std::this_thread::get_id(); });
    issued = true;
    engine.synchronize();
    EXPECT_EQ(readied, completer) << "trial " << trial;
  }
}

TEST(StreamEngine, AHookThatThrowsFailsItsOperation) {
  cpu::StreamEngine engine(Clock::now());
  bool ran = false;
  engine.submit(kCompute, [&] { ran = true; }, [] { throw std::runtime_error("no slot"); });
  EXPECT_THROW(engine.synchronize(), std::runtime_error);
  EXPECT_FALSE(ran);
}

TEST(StreamEngine, AnOperationSkippedAfterAFailureIsNeverReadyAndReleasesItsHook) {
  cpu::StreamEngine engine(Clock::now());
  auto held = std::make_shared<int>(0);
  bool ready = false;
  std::atomic<bool> issued{false};
  const core::Event fail = engine.submit(kCompute, [&issued] {
    while (!issued) std::this_thread::yield();  // fails only once the dependent operation is queued
    throw std::runtime_error("kernel failed");
  });
  engine.stream_wait(kComm, fail);
  engine.submit(kComm, [] {}, [&ready, held] { ready = true; });
  issued = true;
  EXPECT_THROW(engine.synchronize(), std::runtime_error);
  engine.quiesce();
  EXPECT_FALSE(ready);
  EXPECT_EQ(held.use_count(), 1) << "the skipped operation's hook still holds what it captured";
}

}  // namespace
}  // namespace moesys::exec
