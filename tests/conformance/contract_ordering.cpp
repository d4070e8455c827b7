// Conformance: order on one stream, order across streams (stream_wait), host waits, events.
#include "contract_cases.hpp"
#include "contract_support.hpp"

namespace moesys::conformance {

using core::streams::kComm2;
using core::streams::kCompute;
using core::streams::kGather;

namespace {
constexpr std::int64_t kN = 4096;
constexpr double kEps = 1e-12;  // span times are doubles of one clock; allow rounding, not reordering
}  // namespace

// A slow GEMM, then x = 1, x = x + x, x = x + x on one stream: 4 only if they ran in issue order, each after the
// previous one ended.
void OneStreamRunsInIssueOrder(core::Runtime& rt) {
  SlowGemm g(rt);
  auto x = rt.alloc(core::Tier::hbm, floats(kN), "conformance");
  rt.compute(kCompute, g.op(), "order:gemm");
  rt.compute(kCompute, fill(x, kN, 1.0), "order:fill");
  rt.compute(kCompute, add(x, x, x, kN), "order:double1");
  const core::Event last = rt.compute(kCompute, add(x, x, x, kN), "order:double2");
  rt.wait(last);
  expect_all(read(rt, x, kN, last), 4.0f, "x after fill, double, double");
  const char* names[] = {"order:gemm", "order:fill", "order:double1", "order:double2"};
  const core::Span* prev = nullptr;
  for (const char* n : names) {
    const core::Span* s = find_span(rt, n);
    ASSERT_NE(s, nullptr) << n;
    EXPECT_EQ(s->stream, "compute") << n;
    EXPECT_GE(s->end_s, s->start_s) << n;
    if (prev) {
      EXPECT_GE(s->start_s + kEps, prev->end_s) << n << " started before " << prev->name << " ended";
    }
    prev = s;
  }
  EXPECT_GE(rt.now_s() + kEps, prev->end_s);
  rt.free(x);
  g.free(rt);
}

// Stream A: slow GEMM, then x = 3. Stream B waits for A's event, then y = x + x: 6 only if B's kernel ran after A's.
void StreamWaitOrdersAcrossStreams(core::Runtime& rt) {
  SlowGemm g(rt);
  auto x = rt.alloc(core::Tier::hbm, floats(kN), "conformance"),
       y = rt.alloc(core::Tier::hbm, floats(kN), "conformance");
  put(rt, x, std::vector<float>(kN, 0.0f));
  put(rt, y, std::vector<float>(kN, 0.0f));
  rt.compute(kCompute, g.op(), "xstream:gemm");
  const core::Event written = rt.compute(kCompute, fill(x, kN, 3.0), "xstream:fill");
  rt.stream_wait(kComm2, written);
  const core::Event read_back = rt.compute(kComm2, add(x, x, y, kN), "xstream:add");
  rt.wait(read_back);
  expect_all(read(rt, y, kN, read_back), 6.0f, "y = x + x on the waiting stream");
  const core::Span* a = find_span(rt, "xstream:fill");
  const core::Span* b = find_span(rt, "xstream:add");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(b->stream, core::stream_name(kComm2));
  EXPECT_GE(b->start_s + kEps, a->end_s) << "the waiting stream started before the event";
  rt.free(x), rt.free(y);
  g.free(rt);
}

// The host waits for an event of a stream it issued nothing else on: the work is complete and visible.
void WaitOnEventOfAnotherStream(core::Runtime& rt) {
  SlowGemm g(rt);
  auto x = rt.alloc(core::Tier::hbm, floats(kN), "conformance");
  put(rt, x, std::vector<float>(kN, 0.0f));
  rt.compute(kGather, g.op(), "hostwait:gemm");
  const core::Event e = rt.compute(kGather, fill(x, kN, 5.0), "hostwait:fill");
  rt.wait(e);
  const double after = rt.now_s();
  expect_all(read(rt, x, kN, e), 5.0f, "x after waiting for its event");
  const core::Span* s = find_span(rt, "hostwait:fill");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->stream, core::stream_name(kGather));
  EXPECT_GE(after + kEps, s->end_s) << "wait returned before the operation ended";
  rt.free(x);
  g.free(rt);
}

// synchronize() returns when every stream is idle: every operation's span ended before it returned.
void SynchronizeWaitsForEveryStream(core::Runtime& rt) {
  SlowGemm g(rt);
  const core::StreamId streams[] = {kCompute, kComm2, kGather};
  std::vector<core::Buffer> xs;
  for (std::size_t i = 0; i < 3; ++i) {
    xs.push_back(rt.alloc(core::Tier::hbm, floats(kN), "conformance"));
    put(rt, xs.back(), std::vector<float>(kN, 0.0f));
  }
  for (std::size_t i = 0; i < 3; ++i) {
    rt.compute(streams[i], g.op(), ("sync:gemm" + std::to_string(i)).c_str());
    rt.compute(streams[i], fill(xs[i], kN, double(i + 1)), ("sync:fill" + std::to_string(i)).c_str());
  }
  rt.synchronize();
  const double after = rt.now_s();
  for (std::size_t i = 0; i < 3; ++i) {
    expect_all(read(rt, xs[i], kN), float(i + 1), "buffer of stream " + std::to_string(i));
    const core::Span* s = find_span(rt, "sync:fill" + std::to_string(i));
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->stream, core::stream_name(streams[i]));
    EXPECT_GE(after + kEps, s->end_s);
    rt.free(xs[i]);
  }
  g.free(rt);
}

// Event 0 is "already complete"; waiting for a completed event again returns at once and changes nothing.
void CompletedEventsNeedNoWait(core::Runtime& rt) {
  auto x = rt.alloc(core::Tier::hbm, floats(kN), "conformance");
  rt.wait(core::Event{});
  rt.stream_wait(kCompute, core::Event{});
  const core::Event e = rt.compute(kCompute, fill(x, kN, 2.0), "events:fill");
  EXPECT_NE(e.id, 0u) << "an issued operation has a real event";
  rt.wait(e);
  const double t = rt.now_s();
  rt.wait(e);
  rt.stream_wait(kComm2, e);
  const core::Event f = rt.compute(kComm2, add(x, x, x, kN), "events:add");
  rt.wait(f);
  EXPECT_NE(f.id, e.id);
  EXPECT_GE(rt.now_s(), t);
  expect_all(read(rt, x, kN, f), 4.0f, "x after fill and double");
  rt.free(x);
}

}  // namespace moesys::conformance
