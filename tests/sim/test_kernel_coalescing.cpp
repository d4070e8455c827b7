// Coalesced kernels (SimOptions::coalesce_kernels, sim/sim_runtime.hpp's KernelRun): back-to-back kernels of a
// stream run as one SimGrid execution. Every case runs the same program with one span per kernel and coalesced,
// and checks that everything the program can observe (when its waits return, when other streams' operations
// start and end, the step reports of training runs) is the same to rounding.
#include <gtest/gtest.h>

#include <cmath>

#include "fork_run.hpp"
#include "sim/simulation.hpp"
#include "small_programs.hpp"
#include "sim/training_simulator.hpp"

using namespace moesys;
using nlohmann::json;

namespace {

using test::nodes;
constexpr auto gemm = test::square_gemm;

sim::SimOptions coalescing(bool on) {
  sim::SimOptions o;
  o.coalesce_kernels = on;
  return o;
}

/// What the ranks observe, in a child process (one SimGrid engine per process): the number of compute spans,
/// their summed length (coalescing keeps their union), then the clock after each wait the program records and
/// the start and end of every other span, in order.
std::vector<double> observe(const core::ClusterSpec& spec, int ranks, bool coalesce,
                            const std::function<void(core::Runtime&, std::vector<double>&)>& program) {
  return test::run_in_child([&] {
    std::vector<std::vector<double>> clocks(static_cast<std::size_t>(ranks));
    const sim::SimResult r = sim::simulate(
        spec, ranks, [&](core::Runtime& rt) { program(rt, clocks[static_cast<std::size_t>(rt.rank())]); },
        coalescing(coalesce));
    std::vector<double> out = {0, 0};
    for (const auto& c : clocks) out.insert(out.end(), c.begin(), c.end());
    for (const auto& rank : r.ranks)
      for (const core::Span& s : rank.spans) {
        if (s.kind == core::SpanKind::compute) {
          out[0] += 1;
          out[1] += s.duration_s();
        } else {
          out.push_back(s.start_s);
          out.push_back(s.end_s);
        }
      }
    return out;
  });
}

/// Runs `program` both ways and checks that nothing observable differs; returns the compute spans of each.
std::pair<double, double> compare(const core::ClusterSpec& spec, int ranks,
                                  const std::function<void(core::Runtime&, std::vector<double>&)>& program) {
  const std::vector<double> each = observe(spec, ranks, false, program), run = observe(spec, ranks, true, program);
  EXPECT_EQ(run.size(), each.size());
  for (std::size_t i = 1; i < std::min(run.size(), each.size()); ++i)
    EXPECT_NEAR(run[i], each[i], 1e-12 * std::max(1.0, std::abs(each[i]))) << "observation " << i;
  return {each.at(0), run.at(0)};
}

void mark(core::Runtime& rt, std::vector<double>& clock, const char* name) {
  clock.push_back(rt.now_s());
  rt.begin_phase(name);
  rt.end_phase();
}

}  // namespace

TEST(KernelCoalescing, BackToBackKernelsBecomeOneExecution) {
  auto [each, run] = compare(nodes(1), 1, [](core::Runtime& rt, std::vector<double>& clock) {
    for (int i = 0; i < 6; ++i) rt.compute(core::streams::kCompute, gemm(1024 + 512 * i), "k");
    rt.synchronize();
    mark(rt, clock, "done");
  });
  EXPECT_EQ(each, 6);
  EXPECT_LE(run, 2);  // the first kernel may start alone: the stream's actor runs as soon as it is issued
}

TEST(KernelCoalescing, AnEventAnotherStreamWaitsForEndsTheExecutionThere) {
  // The dependency is issued before the run starts: the run's first execution stops at k2.
  compare(nodes(1), 1, [](core::Runtime& rt, std::vector<double>& clock) {
    rt.compute(core::streams::kCompute, gemm(2048), "k1");
    auto k2 = rt.compute(core::streams::kCompute, gemm(3072), "k2");
    rt.compute(core::streams::kCompute, gemm(2048), "k3");
    rt.compute(core::streams::kCompute, gemm(4096), "k4");
    rt.stream_wait(core::streams::kComm, k2);
    auto after = rt.compute(core::streams::kComm, gemm(2048), "after-k2");  // shares the GPU with k3, k4
    rt.wait(after);
    mark(rt, clock, "after");
    rt.synchronize();
    mark(rt, clock, "done");
  });
}

TEST(KernelCoalescing, ALateWaiterSplitsTheExecutionInFlight) {
  // Kernels k1..k6 (work 1 : 1.4 : 2 : 2.6 : 3.4 : 4.3) run as one execution beside another stream's kernel of
  // work 3.4, which shares the GPU and ends during k3. Only then does the host wait for k4: the execution is
  // cancelled at its progress and restarted up to k4. It then waits for k1, which ended inside the run, and a
  // third stream waits for k5 in the same way as the host did for k4.
  compare(nodes(1), 1, [](core::Runtime& rt, std::vector<double>& clock) {
    std::vector<core::Event> k;
    for (int i = 0; i < 6; ++i) k.push_back(rt.compute(core::streams::kCompute, gemm(2048 + 256 * i), "k"));
    auto other = rt.compute(core::streams::kComm, gemm(3072), "other");
    rt.wait(other);
    mark(rt, clock, "other");
    rt.wait(k[3]);
    mark(rt, clock, "k4");
    rt.wait(k[0]);
    mark(rt, clock, "k1");
    rt.stream_wait(core::streams::kH2D, k[4]);
    auto late = rt.compute(core::streams::kH2D, gemm(1024), "after-k5");
    rt.wait(late);
    mark(rt, clock, "after-k5");
    rt.synchronize();
    mark(rt, clock, "done");
  });
}

TEST(KernelCoalescing, CollectivesBetweenKernelsOnSeveralRanks) {
  // Ranks compute different amounts before an all-reduce that waits for their kernels, then compute more while
  // the next all-reduce runs: communication kernels share the GPU with the runs.
  compare(nodes(1), 4, [](core::Runtime& rt, std::vector<double>& clock) {
    core::Event last;
    for (int i = 0; i <= rt.rank(); ++i) last = rt.compute(core::streams::kCompute, gemm(2048), "pre");
    rt.stream_wait(core::streams::kComm, last);
    auto reduced = rt.all_reduce(core::streams::kComm, core::Group::world(4), {}, 256 << 20, core::Dtype::bf16,
                                 core::CollectiveAlgo::automatic);
    for (int i = 0; i < 4; ++i) rt.compute(core::streams::kCompute, gemm(3072), "overlapped");
    rt.wait(reduced);
    mark(rt, clock, "reduced");
    rt.synchronize();
    mark(rt, clock, "done");
  });
}

TEST(KernelCoalescing, TrainingReportsAreTheSame) {
  // The paper's presets, and a today's model with pipeline stages: the step and its breakdown.
  for (const json& config : test::reference_training_configs()) {
    SCOPED_TRACE(config.dump());
    const auto parsed = policies::training::parse_training_config(config, "test.json");
    auto numbers = [&](bool kernel_spans) {
      return test::run_in_child([&] {
        const json s = policies::training::run_training(
                           parsed, policies::training::sim_simulator(core::default_calibration(), kernel_spans))
                           .summary;
        std::vector<double> out;
        for (const char* p : {"/step_s", "/tokens_per_s", "/breakdown_s/compute", "/breakdown_s/exposed_comm",
                              "/breakdown_s/exposed_copy", "/breakdown_s/idle"})
          out.push_back(s.at(json::json_pointer(p)).get<double>());
        return out;
      });
    };
    const std::vector<double> each = numbers(true), run = numbers(false);
    ASSERT_EQ(run.size(), each.size());
    for (std::size_t i = 0; i < each.size(); ++i)  // times to 1e-9 of the step, tokens/s to 1e-9 of itself
      EXPECT_NEAR(run[i], each[i], 1e-9 * (i == 1 ? each[1] : each[0])) << i;
  }
}
