// Flows through carriers (sim/flow_carriers.hpp) are the same network actions as host-to-host communications:
// a program of collectives, point-to-point messages and copies between tiers gives bitwise the same span times
// whichever way its flows run.
#include <gtest/gtest.h>

#include "fork_run.hpp"
#include "sim/simulation.hpp"

using namespace moesys;

namespace {

// Every span's start and end on every rank, then the makespan, of one program run with the given flow limit.
std::vector<double> span_times(std::size_t direct_flow_limit) {
  return test::run_in_child([&] {
    core::ClusterGeneratorOptions o;
    o.nodes = 2;  // 16 GPUs: NVLink inside a node, the NICs between
    sim::SimOptions options;
    options.direct_flow_limit = direct_flow_limit;
    options.solo_flows = false;  // every flow through SimGrid, so that the carriers carry them
    const sim::SimResult r = sim::simulate(core::generate_cluster(o), 16, [](core::Runtime& rt) {
      const core::Group world = core::Group::world(16);
      std::vector<std::uint64_t> sizes;
      for (int p = 0; p < 16; ++p) sizes.push_back(std::uint64_t(1 + (rt.rank() * 7 + p * 3) % 11) << 20);
      auto host = rt.alloc(core::Tier::dram, 64 << 20, "x"), hbm = rt.alloc(core::Tier::hbm, 64 << 20, "x");
      const core::Event up = rt.copy(core::streams::kH2D, hbm, host, 48 << 20);  // beside the collectives
      rt.wait(rt.all_to_all(core::streams::kComm, world, {}, sizes, {}, sizes, core::CollectiveAlgo::direct));
      rt.wait(rt.all_to_all(core::streams::kComm, world, {}, sizes, {}, sizes, core::CollectiveAlgo::hierarchical));
      rt.wait(rt.all_reduce(core::streams::kComm2, world, {}, 256 << 20, core::Dtype::bf16));
      const int peer = rt.rank() ^ 8;  // across the nodes
      rt.send(core::streams::kComm, peer, {}, 8 << 20, 1);
      rt.wait(rt.recv(core::streams::kComm2, peer, {}, 8 << 20, 1));
      rt.wait(up);
      rt.synchronize();
    }, options);
    std::vector<double> out;
    for (const auto& rank : r.ranks)
      for (const auto& s : rank.spans) out.insert(out.end(), {s.start_s, s.end_s});
    out.push_back(r.makespan_s);
    return out;
  });
}

}  // namespace

TEST(FlowCarriers, GiveTheSameTimesAsHostToHostCommunications) {
  const std::vector<double> direct = span_times(1u << 30), carried = span_times(0);
  ASSERT_GT(direct.size(), 16u);
  ASSERT_EQ(direct.size(), carried.size());
  for (std::size_t i = 0; i < direct.size(); ++i) EXPECT_EQ(direct[i], carried[i]) << "time " << i;
  // Mixed: a limit below the flows of one collective sends some batches each way.
  const std::vector<double> mixed = span_times(40);
  ASSERT_EQ(direct.size(), mixed.size());
  for (std::size_t i = 0; i < direct.size(); ++i) EXPECT_EQ(direct[i], mixed[i]) << "time " << i;
}
