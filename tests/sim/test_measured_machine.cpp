// The simulator on a measured machine of CPU ranks: kernel classes at their measured rates, kernels of the
// node's ranks sharing its compute slots, the wake-up of an idle stream and the fixed cost of a collective call.
#include <gtest/gtest.h>

#include <functional>

#include <simgrid/s4u/Actor.hpp>

#include "fork_run.hpp"
#include "sim/compute_model.hpp"
#include "sim/simulation.hpp"

using namespace moesys;

namespace {

constexpr double kRate = 1e10;  // "gemm NN" work per second

core::ClusterSpec measured(int gpus, int slots) {
  core::ClusterGeneratorOptions o;
  o.nodes = 1, o.gpus_per_node = gpus, o.nics_per_node = 1;
  core::ClusterSpec c = core::generate_cluster(o);
  c.node.gpu.kernel_rates["gemm NN"] = {{0.0, kRate}};
  c.node.compute_slots = slots;
  return c;
}

core::GemmOp gemm() {
  core::GemmOp g;
  g.m = g.n = g.k = 1000;  // 2e9 flop: 0.2 s at kRate
  g.dtype = core::Dtype::fp32;
  return g;
}

core::Calibration no_launch(double wake_s = 0) {
  core::Calibration c = core::default_calibration();
  c.kernel_launch_s = 0;
  c.stream_wake_s = wake_s;
  return c;
}

double alone_s() { return gemm().flop() / kRate; }

// Every rank runs one GEMM; the time at which the last one finishes.
double makespan(int gpus, int slots) {
  sim::SimOptions options;
  options.calibration = no_launch();
  return sim::simulate(measured(gpus, slots), gpus, [](core::Runtime& rt) {
           rt.wait(rt.compute(core::streams::kCompute, gemm(), "gemm"));
         }, options).makespan_s;
}

}  // namespace

TEST(MeasuredMachine, AListedClassTakesItsMeasuredRate) {
  const core::ClusterSpec c = measured(1, 1);
  EXPECT_NEAR(sim::kernel_cost(gemm(), c.node.gpu, no_launch()).seconds, 0.2, 1e-12);
  core::GemmOp other = gemm();
  other.trans_b = true;  // "gemm NT" is not listed: the roofline of the GPU spec
  EXPECT_NE(sim::kernel_cost(other, c.node.gpu, no_launch()).seconds, 0.2);
}

TEST(MeasuredMachine, RanksShareTheComputeSlots) {
  // Four ranks on two slots: two kernels at a time, each at its alone rate.
  EXPECT_NEAR(makespan(4, 2), 2 * alone_s(), 1e-9);
}

TEST(MeasuredMachine, EnoughSlotsRunEveryRankAtItsAloneRate) { EXPECT_NEAR(makespan(4, 4), alone_s(), 1e-9); }

TEST(MeasuredMachine, AKernelTakesASlotWhole) {
  // Three ranks on two slots: two kernels run at their alone rate, the third waits for a slot (sharing the cores
  // fairly instead would finish all three at 1.5 times the alone time).
  EXPECT_NEAR(makespan(3, 2), 2 * alone_s(), 1e-9);
}

TEST(MeasuredMachine, AnIdleStreamWakesUpBeforeItsOperationStarts) {
  const double wake = 1e-3;
  sim::SimOptions options;
  options.calibration = no_launch(wake);
  double end = 0;
  sim::simulate(measured(1, 1), 1, [&](core::Runtime& rt) {
    rt.compute(core::streams::kCompute, gemm(), "a");           // the idle stream wakes up
    const core::Event b = rt.compute(core::streams::kCompute, gemm(), "b");  // queued behind a: no wake-up
    rt.stream_wait(core::streams::kComm, b);
    rt.wait(rt.compute(core::streams::kComm, gemm(), "c"));    // waits for b, then wakes up
    end = rt.now_s();
  }, options);
  EXPECT_NEAR(end, wake + 2 * alone_s() + wake + alone_s(), 1e-9);
}

namespace {
// Two ranks: rank 0 runs a GEMM from time 0; rank 1 issues one on `stream` at 0.1 s, with a busy compute wake-up of
// 0.15 s (and no idle wake-up). The time at which the last one ends.
double late_kernel_end(int slots, core::StreamId stream) {
  sim::SimOptions options;
  options.calibration = no_launch();
  options.calibration.busy_compute_wake_s = 0.15;
  const std::vector<double> out = test::run_in_child([&] {
    return std::vector<double>{sim::simulate(measured(2, slots), 2, [stream](core::Runtime& rt) {
                                 if (rt.rank() == 1) simgrid::s4u::this_actor::sleep_for(0.1);
                                 rt.wait(rt.compute(rt.rank() == 1 ? stream : core::streams::kCompute, gemm(), "gemm"));
                               }, options).makespan_s};
  });
  return out.empty() ? -1 : out[0];
}
}  // namespace

TEST(MeasuredMachine, AComputeWorkerWokenWhileEverySlotIsHeldWaitsForASlice) {
  // One slot, held by rank 0 until 0.2 s: rank 1's compute worker wakes at 0.1 + 0.15, then runs 0.2 s.
  EXPECT_NEAR(late_kernel_end(1, core::streams::kCompute), 0.45, 1e-9);
  // Two slots, one free: the idle wake-up (0), so rank 1 runs from 0.1 s.
  EXPECT_NEAR(late_kernel_end(2, core::streams::kCompute), 0.1 + alone_s(), 1e-9);
  // Other streams' workers (higher priority on CPU ranks) do not pay it: rank 1 waits for the slot only.
  EXPECT_NEAR(late_kernel_end(1, core::streams::kComm), 2 * alone_s(), 1e-9);
  // GPUs have no slots: nothing changes.
  EXPECT_NEAR(late_kernel_end(0, core::streams::kCompute), 0.1 + alone_s(), 1e-9);
}

namespace {
// Two ranks: rank 0 runs a GEMM from time 0; rank 1 issues one at `at` s, with a slot handoff of 0.05 s. The time
// at which the last one ends.
double handed_over_kernel_end(int slots, double at) {
  sim::SimOptions options;
  options.calibration = no_launch();
  options.calibration.slot_handoff_s = 0.05;
  const std::vector<double> out = test::run_in_child([&] {
    return std::vector<double>{sim::simulate(measured(2, slots), 2, [at](core::Runtime& rt) {
                                 if (rt.rank() == 1) simgrid::s4u::this_actor::sleep_for(at);
                                 rt.wait(rt.compute(core::streams::kCompute, gemm(), "gemm"));
                               }, options).makespan_s};
  });
  return out.empty() ? -1 : out[0];
}
}  // namespace

TEST(MeasuredMachine, AKernelThatQueuedForASlotStartsAHandoffAfterItsRelease) {
  // One slot, held by rank 0 until 0.2 s: rank 1's kernel, ready at 0.1, starts at 0.2 + 0.05.
  EXPECT_NEAR(handed_over_kernel_end(1, 0.1), 0.25 + alone_s(), 1e-9);
  // The slot is free when rank 1's kernel becomes ready (after rank 0's): no handoff.
  EXPECT_NEAR(handed_over_kernel_end(1, 0.3), 0.3 + alone_s(), 1e-9);
  // Two slots: nobody queues.
  EXPECT_NEAR(handed_over_kernel_end(2, 0.1), 0.1 + alone_s(), 1e-9);
}

namespace {
// Seconds for every rank to finish `op` on a 4-rank node with the given fixed cost per collective call.
double comm_time(double call_latency_s, const std::function<void(core::Runtime&)>& op) {
  sim::SimOptions options;
  options.calibration = no_launch();
  options.calibration.collective_latency_s = call_latency_s;
  const std::vector<double> out =
      test::run_in_child([&] { return std::vector<double>{sim::simulate(measured(4, 4), 4, op, options).makespan_s}; });
  return out.empty() ? -1 : out[0];
}
}  // namespace

TEST(MeasuredMachine, ACollectiveCallPaysItsFixedCostOnceNotPerStep) {
  const double call = 2e-3;
  const auto all_gather = [](core::Runtime& rt) {  // a ring of 3 steps, then an all-reduce of 6
    const core::Group world = core::Group::world(4);
    rt.wait(rt.all_gather(core::streams::kComm, world, {}, {}, 4096));
    rt.wait(rt.all_reduce(core::streams::kComm, world, {}, 4096, core::Dtype::fp32));
  };
  EXPECT_NEAR(comm_time(call, all_gather) - comm_time(0, all_gather), 2 * call, 1e-9);
  const auto ping = [](core::Runtime& rt) {  // point-to-point messages are not collective calls
    if (rt.rank() == 0) rt.wait(rt.send(core::streams::kComm, 1, {}, 4096, 7));
    if (rt.rank() == 1) rt.wait(rt.recv(core::streams::kComm, 0, {}, 4096, 7));
  };
  EXPECT_NEAR(comm_time(call, ping), comm_time(0, ping), 1e-12);
}

namespace {
// Rank 0 computes one GEMM and then sends a message that rank 1 has been waiting for since the start; the time
// at which the message arrives, on a node of `slots` compute slots (0: GPUs, which have none).
double gemm_then_message(const core::Calibration& cal, int slots) {
  sim::SimOptions options;
  options.calibration = cal;
  core::ClusterSpec c = measured(2, std::max(slots, 1));
  if (slots == 0) c.node.compute_slots = 0, c.node.gpu.kernel_rates.clear();
  const std::vector<double> out = test::run_in_child([&] {
    return std::vector<double>{sim::simulate(c, 2, [](core::Runtime& rt) {
                                 if (rt.rank() == 0) {
                                   rt.compute(core::streams::kCompute, gemm(), "gemm");
                                   rt.stream_wait(core::streams::kComm, rt.compute(core::streams::kCompute, gemm(), "gemm"));
                                   rt.wait(rt.send(core::streams::kComm, 1, {}, 4, 7));
                                 } else {
                                   rt.wait(rt.recv(core::streams::kComm, 0, {}, 4, 7));
                                 }
                               }, options).makespan_s};
  });
  return out.empty() ? -1 : out[0];
}
}  // namespace

TEST(MeasuredMachine, AWaitingMemberTakesItsShareOfTheSlots) {
  // One slot: rank 1's wait polls with a quarter of the core, so rank 0's two GEMMs run on three quarters of it.
  core::Calibration polls = no_launch();
  polls.progress_core_share = 0.25;
  const double extra = gemm_then_message(polls, 1) - gemm_then_message(no_launch(), 1);
  EXPECT_NEAR(extra, 2 * alone_s() / 0.75 - 2 * alone_s(), 1e-6);
  // A spin of 0.1 s at the start of the wait shares the core half and half with the first GEMM until it ends.
  core::Calibration spins = no_launch();
  spins.progress_spin_s = 0.1;
  EXPECT_NEAR(gemm_then_message(spins, 1) - gemm_then_message(no_launch(), 1), 0.1, 1e-6);
}

TEST(MeasuredMachine, GpusProgressCommunicationWithoutTakingCompute) {
  core::Calibration polls = no_launch();
  polls.progress_core_share = 0.5;
  polls.progress_spin_s = 0.1;
  EXPECT_NEAR(gemm_then_message(polls, 0), gemm_then_message(no_launch(), 0), 1e-12);
}

namespace {
// A machine whose "gemm NN" runs twice as fast on operands its slot's cache holds, with a cache of `cache_bytes`.
core::ClusterSpec with_hot_rates(int gpus, int slots, double cache_bytes) {
  core::ClusterSpec c = measured(gpus, slots);
  c.node.gpu.kernel_hot_rates["gemm NN"] = {{0.0, 2 * kRate}};
  c.node.gpu.kernel_cache_bytes = cache_bytes;
  return c;
}

// gemm() on buffers `a` x `b` -> `c` of 100 KB each (the ids name them).
core::GemmOp gemm_on(std::uint64_t a, std::uint64_t b, std::uint64_t c) {
  core::GemmOp g = gemm();
  for (auto [buffer, id] : {std::pair{&g.a, a}, {&g.b, b}, {&g.c, c}}) buffer->id = id, buffer->bytes = 100'000;
  return g;
}

// Each rank runs `kernels` one after the other on its compute stream; the time the last one ends.
double run_kernels(const core::ClusterSpec& c, int ranks, const std::vector<core::GemmOp>& kernels) {
  sim::SimOptions options;
  options.calibration = no_launch();
  const std::vector<double> out = test::run_in_child([&] {
    return std::vector<double>{sim::simulate(c, ranks, [&kernels](core::Runtime& rt) {
                                 core::Event last;
                                 for (const core::GemmOp& k : kernels) last = rt.compute(core::streams::kCompute, k, "g");
                                 rt.wait(last);
                               }, options).makespan_s};
  });
  return out.empty() ? -1 : out[0];
}
}  // namespace

TEST(MeasuredMachine, AKernelRunsHotOnTheShareOfItsOperandsItsSlotsCacheHolds) {
  const core::ClusterSpec c = with_hot_rates(1, 1, 1e6);
  const double cold = alone_s(), hot = cold / 2;
  // The first kernel meets its operands cold; the second reads the first's output and one of its inputs (two of
  // its three operands held); the third runs on buffers no kernel touched.
  EXPECT_NEAR(run_kernels(c, 1, {gemm_on(1, 2, 3)}), cold, 1e-9);
  EXPECT_NEAR(run_kernels(c, 1, {gemm_on(1, 2, 3), gemm_on(3, 2, 4)}), cold + cold + 2.0 / 3 * (hot - cold), 1e-9);
  EXPECT_NEAR(run_kernels(c, 1, {gemm_on(1, 2, 3), gemm_on(1, 2, 3), gemm_on(5, 6, 7)}), cold + hot + cold, 1e-9);
  // Without hot rates every kernel runs at the cold one.
  EXPECT_NEAR(run_kernels(measured(1, 1), 1, {gemm_on(1, 2, 3), gemm_on(1, 2, 3)}), 2 * cold, 1e-9);
}

TEST(MeasuredMachine, WhatACopyWroteIsInNoSlotsCache) {
  // Two kernels on the same buffers, with a copy into the first one's output in between: the second kernel finds
  // two of its three operands held (its output, buffer 3, was written by the copy).
  sim::SimOptions options;
  options.calibration = no_launch();
  const core::ClusterSpec c = with_hot_rates(1, 1, 1e6);
  const std::vector<double> out = test::run_in_child([&] {
    return std::vector<double>{sim::simulate(c, 1, [](core::Runtime& rt) {
                                 rt.compute(core::streams::kCompute, gemm_on(1, 2, 3), "g");
                                 core::Buffer dst = gemm_on(1, 2, 3).c, src = dst;
                                 src.id = 9;
                                 rt.copy(core::streams::kCompute, dst, src, dst.bytes);  // 0.1 us
                                 rt.wait(rt.compute(core::streams::kCompute, gemm_on(1, 2, 3), "g"));
                               }, options).makespan_s};
  });
  ASSERT_EQ(out.size(), 1u);
  const double cold = alone_s(), hot = cold / 2;
  EXPECT_NEAR(out[0], cold + cold + 2.0 / 3 * (hot - cold), 1e-6);
}

TEST(MeasuredMachine, AnotherRanksKernelOnTheSlotPushesTheOperandsOut) {
  // Two ranks, each running the same kernel twice on its own buffers (300 KB, the cache's size). On one slot the
  // ranks alternate, so each one's second kernel finds the other's operands there: four cold kernels. On two
  // slots each rank keeps its slot and its second kernel runs hot.
  const std::vector<core::GemmOp> twice = {gemm_on(1, 2, 3), gemm_on(1, 2, 3)};
  EXPECT_NEAR(run_kernels(with_hot_rates(2, 1, 300'000), 2, twice), 4 * alone_s(), 1e-9);
  EXPECT_NEAR(run_kernels(with_hot_rates(2, 2, 300'000), 2, twice), 1.5 * alone_s(), 1e-9);
}
