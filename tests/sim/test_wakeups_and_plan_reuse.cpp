// The exactness arguments of the simulator's fast paths (docs/simulator-speed.md), checked directly:
// - targeted wake-ups: an actor waiting for an event resumes exactly when that event completes, whichever
//   stream it is on and however many actors wait for it (no wake-up lost, none early);
// - plan reuse: a cached plan is the plan that planning again would give, and only identical calls share one.
#include <gtest/gtest.h>

#include "sim/compute_model.hpp"
#include "sim/plan_cache.hpp"
#include "sim/simulation.hpp"
#include "small_programs.hpp"

using namespace moesys;

namespace {

using test::nodes;
constexpr auto gemm = test::square_gemm;

const core::Span& span_named(const sim::RankReport& r, const std::string& name) {
  for (const auto& s : r.spans)
    if (s.name == name) return s;
  throw std::runtime_error("no span " + name);
}

sim::CollectiveCall all_to_all(int n, double bytes) {
  sim::CollectiveCall c;
  c.op = sim::CollectiveOp::all_to_all;
  for (int g = 0; g < n; ++g) c.members.push_back(g);
  c.matrix.assign(static_cast<std::size_t>(n), std::vector<double>(static_cast<std::size_t>(n), bytes));
  return c;
}

std::vector<sim::Transfer> transfers_of(const sim::Stage& stage) {
  std::vector<sim::Transfer> out;
  stage.for_each_transfer([&](const sim::Transfer& t) { out.push_back(t); });
  return out;
}

bool same_plan(const sim::CollectivePlan& a, const sim::CollectivePlan& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t s = 0; s < a.size(); ++s) {
    const auto ta = transfers_of(a[s]), tb = transfers_of(b[s]);
    if (a[s].latency_steps != b[s].latency_steps || a[s].net_latency_steps != b[s].net_latency_steps ||
        ta.size() != tb.size())
      return false;
    for (std::size_t t = 0; t < ta.size(); ++t) {
      const auto &x = ta[t], &y = tb[t];
      if (x.src_gpu != y.src_gpu || x.dst_gpu != y.dst_gpu || x.bytes != y.bytes || x.message_bytes != y.message_bytes)
        return false;
    }
  }
  return true;
}

}  // namespace

TEST(Wakeups, ManyStreamsWaitingForOneEventStartWhenItEnds) {
  auto result = sim::simulate(nodes(1), 2, [&](core::Runtime& rt) {
    auto first = rt.compute(core::streams::kCompute, gemm(4096), "first");
    for (core::StreamId s : {core::streams::kComm, core::streams::kH2D, core::streams::kD2H, core::streams::kComm2}) {
      rt.stream_wait(s, first);
      rt.compute(s, gemm(1024), "after" + std::to_string(s));
    }
    rt.wait(first);
    rt.begin_phase("host");
    rt.end_phase();
  });
  for (const auto& r : result.ranks) {
    const double end = span_named(r, "first").end_s;
    EXPECT_EQ(span_named(r, "host").start_s, end);
    for (core::StreamId s : {core::streams::kComm, core::streams::kH2D, core::streams::kD2H, core::streams::kComm2})
      EXPECT_EQ(span_named(r, "after" + std::to_string(s)).start_s, end) << "stream " << s;
  }
}

TEST(Wakeups, WaitsOnEarlierAndLaterEventsOfABusyStream) {
  // The host waits for the second of three kernels while a second stream waits for the third: each resumes at
  // its own event, not at the first completion on the stream.
  auto result = sim::simulate(nodes(1), 1, [&](core::Runtime& rt) {
    rt.compute(core::streams::kCompute, gemm(2048), "k1");
    auto k2 = rt.compute(core::streams::kCompute, gemm(2048), "k2");
    auto k3 = rt.compute(core::streams::kCompute, gemm(2048), "k3");
    rt.stream_wait(core::streams::kComm, k3);
    rt.compute(core::streams::kComm, gemm(512), "after-k3");
    rt.wait(k2);
    rt.begin_phase("after-k2");
    rt.end_phase();
    rt.synchronize();
    rt.begin_phase("synchronized");
    rt.end_phase();
  });
  const auto& r = result.ranks[0];
  EXPECT_EQ(span_named(r, "after-k2").start_s, span_named(r, "k2").end_s);
  EXPECT_LT(span_named(r, "after-k2").start_s, span_named(r, "k3").end_s);
  EXPECT_EQ(span_named(r, "after-k3").start_s, span_named(r, "k3").end_s);
  EXPECT_EQ(span_named(r, "synchronized").start_s, span_named(r, "after-k3").end_s);
}

TEST(Wakeups, CollectiveMembersLeaveTogetherWhenTheLastArrives) {
  // Rank r computes r kernels first, so members arrive at different times; all leave when the collective ends.
  auto result = sim::simulate(nodes(1), 4, [&](core::Runtime& rt) {
    for (int i = 0; i < rt.rank(); ++i) rt.compute(core::streams::kComm, gemm(2048), "pre");
    rt.wait(rt.all_reduce(core::streams::kComm, core::Group::world(4), {}, 64 << 20, core::Dtype::bf16,
                          core::CollectiveAlgo::automatic));
    rt.begin_phase("left");
    rt.end_phase();
  });
  const double end = span_named(result.ranks[3], "left").start_s;
  for (const auto& r : result.ranks) {
    EXPECT_EQ(span_named(r, "allreduce").end_s, end);
    EXPECT_EQ(span_named(r, "left").start_s, end);
  }
}

TEST(PlanReuse, ACachedPlanIsThePlanPlanningAgainGives) {
  const auto spec = nodes(4);
  sim::PlanCache cache;
  bool reused = true;
  auto call = all_to_all(32, 1 << 20);
  auto first = cache.plan(spec, core::default_calibration(), 7, call, core::CollectiveAlgo::hierarchical, reused);
  EXPECT_FALSE(reused);
  auto again = cache.plan(spec, core::default_calibration(), 7, call, core::CollectiveAlgo::hierarchical, reused);
  EXPECT_TRUE(reused);
  EXPECT_EQ(first.get(), again.get());
  EXPECT_TRUE(same_plan(
      *again, sim::plan_collective(spec, core::default_calibration(), call, core::CollectiveAlgo::hierarchical)));
}

TEST(PlanReuse, OnlyIdenticalCallsShareAPlan) {
  const auto spec = nodes(4);
  sim::PlanCache cache;
  bool reused = false;
  auto call = all_to_all(32, 1 << 20);
  cache.plan(spec, core::default_calibration(), 7, call, core::CollectiveAlgo::direct, reused);
  auto other_sizes = call;
  other_sizes.matrix[3][5] += 1;  // one entry of one row
  auto changed = cache.plan(spec, core::default_calibration(), 7, other_sizes, core::CollectiveAlgo::direct, reused);
  EXPECT_FALSE(reused);
  EXPECT_TRUE(same_plan(
      *changed, sim::plan_collective(spec, core::default_calibration(), other_sizes, core::CollectiveAlgo::direct)));
  cache.plan(spec, core::default_calibration(), 8, call, core::CollectiveAlgo::direct, reused);  // another group
  EXPECT_FALSE(reused);
  cache.plan(spec, core::default_calibration(), 7, call, core::CollectiveAlgo::hierarchical,
             reused);  // another algorithm
  EXPECT_FALSE(reused);
  sim::CollectiveCall ring;
  ring.op = sim::CollectiveOp::all_reduce;
  ring.members = call.members;
  ring.bytes = 1 << 20;
  cache.plan(spec, core::default_calibration(), 7, ring, core::CollectiveAlgo::ring, reused);
  ring.op = sim::CollectiveOp::all_gather;  // same size, another operation
  cache.plan(spec, core::default_calibration(), 7, ring, core::CollectiveAlgo::ring, reused);
  EXPECT_FALSE(reused);
  cache.plan(spec, core::default_calibration(), -1, ring, core::CollectiveAlgo::ring, reused);  // uncached (a message)
  EXPECT_FALSE(reused);
}
