// Flows alone on their links end in closed form (sim/solo_flows.hpp). Each case runs the same program with every
// flow in SimGrid and with solo flows, and checks that every span ends at the same time to rounding: a flow that
// stays alone, solo flows that meet other flows mid-flight and finish in SimGrid, and whole training steps.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "fork_run.hpp"
#include "sim/simulation.hpp"
#include "sim/training_simulator.hpp"
#include "small_programs.hpp"

using namespace moesys;
using nlohmann::json;

namespace {

/// Every span's start and end on every rank and the makespan; then the flows planned, those that ended solo and
/// those that met another flow mid-flight.
std::vector<double> span_times(const core::ClusterSpec& spec, int ranks, std::size_t max_solo_component,
                               const std::function<void(core::Runtime&)>& program) {
  return test::run_in_child([&] {
    sim::SimOptions options;
    options.solo_flows = max_solo_component > 0;
    options.max_solo_component = max_solo_component;
    const sim::SimResult r = sim::simulate(spec, ranks, program, options);
    std::vector<double> out;
    for (const auto& rank : r.ranks)
      for (const auto& s : rank.spans) out.insert(out.end(), {s.start_s, s.end_s});
    out.push_back(r.makespan_s);
    out.insert(out.end(), {double(r.flows), double(r.solo_flows), double(r.met_flows)});
    return out;
  });
}

struct Counts {
  double flows, solo, met;
};

/// Runs `program` both ways (solo components of at most `max_solo_component` flows), checks the times and the flow
/// counts, and returns the counts of the solo run. Times agree to 2 ns: SimGrid keeps times to its timing
/// precision (1e-9 s), and a flow handed to SimGrid carries its remaining bytes rounded to whole bytes (a few
/// picoseconds at NVLink rates).
Counts compare(const core::ClusterSpec& spec, int ranks, const std::function<void(core::Runtime&)>& program,
               std::size_t max_solo_component = 256) {
  const std::vector<double> simgrid = span_times(spec, ranks, 0, program),
                            solo = span_times(spec, ranks, max_solo_component, program);
  EXPECT_EQ(simgrid.size(), solo.size());
  if (simgrid.size() != solo.size() || simgrid.size() < 4) return {0, 0, 0};
  const std::size_t times = simgrid.size() - 3;
  const double makespan = simgrid[times - 1];
  EXPECT_GT(makespan, 0);
  for (std::size_t i = 0; i < times; ++i) EXPECT_NEAR(solo[i], simgrid[i], 2e-9) << "time " << i;
  EXPECT_EQ(solo[times], simgrid[times]);  // the same flows planned
  EXPECT_EQ(simgrid[times + 1], 0);        // off: none solo
  return {solo[times], solo[times + 1], solo[times + 2]};
}

}  // namespace

TEST(SoloFlows, AFlowAloneEndsWhereSimGridEndsIt) {
  // One host-to-device copy on an idle node: bytes / (efficiency x slowest link), in closed form.
  const Counts c = compare(test::nodes(1), 1, [](core::Runtime& rt) {
    auto host = rt.alloc(core::Tier::dram, 48 << 20, "x"), hbm = rt.alloc(core::Tier::hbm, 48 << 20, "x");
    rt.wait(rt.copy(core::streams::kH2D, hbm, host, 48 << 20));
  });
  EXPECT_EQ(c.flows, 1);
  EXPECT_EQ(c.solo, 1);
  EXPECT_EQ(c.met, 0);
}

// Two nodes. A copy into each GPU and a skewed all-to-all inside each node start alone (PCIe, NVLink); after a
// GEMM, a second copy into the GPU meets the first on its PCIe link and an all-reduce of all 16 GPUs meets the
// all-to-all on the NVLink ports. Point-to-point messages and a hierarchical all-to-all follow.
void meeting_program(core::Runtime& rt) {
  const core::Group world = core::Group::world(16);
  std::vector<int> node_ranks;
  for (int r = rt.rank() / 8 * 8; r < rt.rank() / 8 * 8 + 8; ++r) node_ranks.push_back(r);
  const core::Group node(node_ranks);
  std::vector<std::uint64_t> sizes;
  for (int p = 0; p < 16; ++p) sizes.push_back(std::uint64_t(1 + (rt.rank() * 7 + p * 3) % 11) << 20);
  const std::vector<std::uint64_t> node_sizes(sizes.begin(), sizes.begin() + 8);
  auto host = rt.alloc(core::Tier::dram, 64 << 20, "x"), hbm = rt.alloc(core::Tier::hbm, 64 << 20, "x");
  const core::Event up = rt.copy(core::streams::kH2D, hbm, host, 48 << 20);
  const core::Event local =
      rt.all_to_all(core::streams::kComm, node, {}, node_sizes, {}, node_sizes, core::CollectiveAlgo::direct);
  const core::Event gemm =
      rt.compute(core::streams::kCompute, test::square_gemm(2048 + 256 * (rt.rank() % 4)), "gemm");
  rt.stream_wait(core::streams::kUpload, gemm);
  const core::Event upload = rt.copy(core::streams::kUpload, hbm, host, 16 << 20);
  rt.stream_wait(core::streams::kComm2, gemm);
  const core::Event ar = rt.all_reduce(core::streams::kComm2, world, {}, 256 << 20, core::Dtype::bf16);
  rt.wait(local);
  rt.wait(ar);
  const int peer = rt.rank() ^ 8;  // across the nodes
  rt.send(core::streams::kComm, peer, {}, 8 << 20, 1);
  rt.wait(rt.recv(core::streams::kComm2, peer, {}, 8 << 20, 1));
  rt.wait(rt.all_to_all(core::streams::kComm, world, {}, sizes, {}, sizes, core::CollectiveAlgo::hierarchical));
  rt.wait(up);
  rt.wait(upload);
  rt.synchronize();
}

TEST(SoloFlows, FlowsThatMeetMidFlightAreRescheduledTogether) {
  // The flows that meet join one component, solved again from the meeting instant on what each has left.
  const Counts c = compare(test::nodes(2), 16, meeting_program);
  EXPECT_EQ(c.solo, c.flows);
  EXPECT_EQ(c.met, 0);
}

TEST(SoloFlows, FlowsThatMeetMidFlightFinishInSimGridPastTheComponentLimit) {
  // With components of one flow at most, every meeting hands the flows to SimGrid with what they have left.
  const Counts c = compare(test::nodes(2), 16, meeting_program, 1);
  EXPECT_GT(c.solo, 0);
  EXPECT_GT(c.met, 0);  // the case this test is for
  EXPECT_LT(c.solo, c.flows);
}

TEST(SoloFlows, FlowsSharingLinksOnlyWithEachOtherShareThemAsSimGridDoes) {
  // Two nodes with two NICs each: four GPUs' network halves share a NIC and its PCIe links, so an all-to-all's
  // flows form groups that share links among themselves and with nothing else. The schedule of such a group
  // (max-min shares, rates that change as its flows end) is computed in closed form.
  core::ClusterGeneratorOptions o;
  o.nodes = 2;
  o.nics_per_node = 2;
  const Counts c = compare(core::generate_cluster(o), 16, [](core::Runtime& rt) {
    const core::Group world = core::Group::world(16);
    std::vector<std::uint64_t> sizes;
    for (int p = 0; p < 16; ++p) sizes.push_back(std::uint64_t(1 + (rt.rank() * 5 + p * 3) % 13) << 19);
    rt.wait(rt.all_to_all(core::streams::kComm, world, {}, sizes, {}, sizes, core::CollectiveAlgo::direct));
    rt.wait(rt.all_to_all(core::streams::kComm, world, {}, sizes, {}, sizes, core::CollectiveAlgo::hierarchical));
    rt.wait(rt.all_reduce(core::streams::kComm, world, {}, 64 << 20, core::Dtype::bf16, core::CollectiveAlgo::ring));
    rt.synchronize();
  });
  EXPECT_EQ(c.solo, c.flows);  // nothing else runs: every flow is solo
}

TEST(SoloFlows, MessagesBoundByTheirChannelsShareLinksAsSimGridDoes) {
  // On one node, each GPU's 64 MiB send to the next runs on 4 of NCCL's channels, below its NVLink port's rate (a
  // bound, sim/collectives/p2p_channels.cpp): alone, and with an all-reduce started beside it on another stream,
  // which takes the rest of the port. The bound holds the same in closed form, when the flows meet mid-flight, and
  // in SimGrid (where only a mailbox communication keeps it).
  auto program = [](core::Runtime& rt) {
    const int n = rt.world_size(), r = rt.rank();
    const core::Event s = rt.send(core::streams::kComm, (r + 1) % n, {}, 64 << 20, 0);
    const core::Event v = rt.recv(core::streams::kComm2, (r + n - 1) % n, {}, 64 << 20, 0);
    const core::Event gemm = rt.compute(core::streams::kCompute, test::square_gemm(1024), "gemm");
    rt.stream_wait(core::streams::kUpload, gemm);
    const core::Event ar = rt.all_reduce(core::streams::kUpload, core::Group::world(n), {}, 256 << 20,
                                         core::Dtype::bf16, core::CollectiveAlgo::ring);
    rt.wait(s);
    rt.wait(v);
    rt.wait(ar);
  };
  auto alone = [](core::Runtime& rt) {
    const int n = rt.world_size(), r = rt.rank();
    const core::Event s = rt.send(core::streams::kComm, (r + 1) % n, {}, 64 << 20, 0);
    const core::Event v = rt.recv(core::streams::kComm2, (r + n - 1) % n, {}, 64 << 20, 0);
    rt.wait(s);
    rt.wait(v);
  };
  compare(test::nodes(1), 8, alone);
  compare(test::nodes(1), 8, program);
  const Counts met = compare(test::nodes(1), 8, program, 1);
  EXPECT_GT(met.met, 0);  // the bound flows met the all-reduce's and went on in SimGrid
}

TEST(SoloFlows, TrainingReportsAreTheSame) {
  // The paper's presets on two nodes and a today's model with pipeline stages: the step and its breakdown.
  for (const json& config : test::reference_training_configs()) {
    SCOPED_TRACE(config.dump());
    const auto parsed = policies::training::parse_training_config(config, "test.json");
    auto numbers = [&](bool solo) {
      return test::run_in_child([&] {
        sim::SimOptions options;
        options.coalesce_kernels = true;
        options.solo_flows = solo;
        const json s = policies::training::run_training(parsed, policies::training::sim_simulator(options)).summary;
        std::vector<double> out;
        for (const char* p : {"/step_s", "/tokens_per_s", "/breakdown_s/compute", "/breakdown_s/exposed_comm",
                              "/breakdown_s/exposed_copy", "/breakdown_s/idle", "/simulator/flows",
                              "/simulator/solo_flows"})
          out.push_back(s.at(json::json_pointer(p)).get<double>());
        return out;
      });
    };
    const std::vector<double> simgrid = numbers(false), solo = numbers(true);
    ASSERT_EQ(solo.size(), 8u);
    // Times to 1e-9 of the step or SimGrid's timing precision (1e-9 s, twice: two ends), tokens/s to 1e-9 of itself.
    for (std::size_t i = 0; i < 6; ++i)
      EXPECT_NEAR(solo[i], simgrid[i], i == 1 ? 1e-9 * simgrid[1] : std::max(2e-9, 1e-9 * simgrid[0])) << i;
    EXPECT_EQ(solo[6], simgrid[6]);
    EXPECT_GT(solo[7], 0) << "of " << solo[6];  // some flows of every step are alone on their links
  }
}
