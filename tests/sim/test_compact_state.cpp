// The simulator's compact state at scale is the same state: the root zone stores only the declared routes and
// returns them as declared, a direct all-to-all kept as its matrix lists the transfers an explicit plan lists, and
// copies of a group share one list of members.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/calibration.hpp"
#include "core/cluster.hpp"
#include "core/cluster_graph.hpp"
#include "fork_run.hpp"
#include "sim/collectives.hpp"
#include "sim/platform.hpp"
#include "sim/simgrid_adapter.hpp"

using namespace moesys;

namespace {

core::ClusterSpec two_leaves() {
  core::ClusterGeneratorOptions o;
  o.nodes = 4;  // 32 GPUs on 8 rails
  return core::generate_cluster(o);
}

}  // namespace

// Every GPU pair's SimGrid route (detailed platform) is exactly the cluster graph's route, link by link; a pair
// in one node and a GPU's route to its CPU (a host copy's: with the PCIe links' duplex constraints) too. Run in a child: SimGrid allows one platform per process.
TEST(CompactState, RootZoneReturnsEveryDeclaredRouteAsDeclared) {
  const std::vector<double> mismatches = test::run_in_child([] {
    sim::sg::sg4::Engine engine("compact-state");
    sim::sg::configure_engine(engine);
    const core::ClusterSpec spec = two_leaves();
    const core::ClusterGraph graph(spec, core::Calibration{});
    const sim::Platform platform(graph, /*detailed_routes=*/true);
    double bad = 0, checked = 0;
    auto check = [&](sim::sg::sg4::Host* from, sim::sg::sg4::Host* to, const std::vector<int>& want) {
      std::vector<sim::sg::sg4::Link*> links;
      double latency = 0;
      from->route_to(to, links, &latency);
      bool same = links.size() == want.size() && latency == 0;
      for (std::size_t i = 0; same && i < want.size(); ++i)
        same = links[i]->get_name() == graph.link(want[i]).name + "#" + std::to_string(want[i]);
      bad += same ? 0 : 1;
      checked += 1;
    };
    const int gpus = spec.total_gpus();
    for (int a = 0; a < gpus; ++a) {
      for (int b = 0; b < gpus; ++b)
        if (a != b) check(platform.gpu(a), platform.gpu(b), graph.route(graph.gpu(a), graph.gpu(b)));
      const int node = spec.node_of(a);
      check(platform.gpu(a), platform.cpu(node), graph.host_copy_route(graph.gpu(a), graph.cpu(node)));
    }
    return std::vector<double>{bad, checked};
  });
  ASSERT_EQ(mismatches.size(), 2u) << "the child failed";
  EXPECT_EQ(mismatches[0], 0) << "routes that differ from the graph's";
  EXPECT_EQ(mismatches[1], 32.0 * 31 + 32);
}

// A direct all-to-all's plan keeps the matrix, and walks it as the transfers an explicit list would hold: every
// positive off-diagonal entry in row order, point-to-point at p2p efficiency, its message (the ramp's size) its own
// bytes inside its node and what its sender moves to all its peers across the network.
TEST(CompactState, DenseAllToAllListsTheExplicitTransfers) {
  const core::ClusterSpec spec = two_leaves();
  core::Calibration cal;
  cal.p2p_efficiency = 0.75;
  for (bool p2p : {false, true}) {
    sim::CollectiveCall call;
    call.op = sim::CollectiveOp::all_to_all;
    call.point_to_point = p2p;
    call.members = {3, 9, 17, 30};
    call.matrix = {{5, 1, 0, 2}, {4, 0, 3, 0}, {0, 6, 7, 8}, {9, 0, 0, 1}};
    auto same_node = [&](std::size_t i, std::size_t j) {
      return spec.node_of(call.members[i]) == spec.node_of(call.members[j]);
    };
    auto to_network = [&](std::size_t i) {
      double sum = 0;
      for (std::size_t j = 0; j < 4; ++j)
        if (j != i && !same_node(i, j)) sum += call.matrix[i][j];
      return sum;
    };
    std::vector<sim::Transfer> want;
    for (std::size_t i = 0; i < 4; ++i)
      for (std::size_t j = 0; j < 4; ++j)
        if (i != j && call.matrix[i][j] > 0)
          want.push_back({call.members[i], call.members[j], call.matrix[i][j],
                          same_node(i, j) ? call.matrix[i][j] : to_network(i),
                          p2p ? cal.p2p_efficiency : 1.0});
    const sim::CollectivePlan plan = sim::plan_direct_all_to_all(spec, cal, call);
    ASSERT_EQ(plan.size(), 1u);
    std::vector<sim::Transfer> got;
    plan[0].for_each_transfer([&](const sim::Transfer& t) { got.push_back(t); });
    ASSERT_EQ(got.size(), want.size());
    for (std::size_t k = 0; k < want.size(); ++k) {
      EXPECT_EQ(got[k].src_gpu, want[k].src_gpu);
      EXPECT_EQ(got[k].dst_gpu, want[k].dst_gpu);
      EXPECT_EQ(got[k].bytes, want[k].bytes);
      EXPECT_EQ(got[k].message_bytes, want[k].message_bytes);
      EXPECT_EQ(got[k].bandwidth_fraction, want[k].bandwidth_fraction);
    }
    EXPECT_EQ(plan[0].net_latency_steps, 1) << "members on several nodes: one network step";
    EXPECT_EQ(plan[0].fixed_latency_s, 2 * cal.alltoall_net_peer_latency_s + cal.net_step_latency_s)
        << "at most 2 network peers per member, and the receivers' buffer posts";
    EXPECT_EQ(plan[0].held_bytes(), 16 * sizeof(double) + 4 * (sizeof(int) + sizeof(double)));
  }
}

TEST(CompactState, GroupCopiesShareTheirMembers) {
  const core::Group a = core::Group::world(8192), b = core::Group::world(8192);
  EXPECT_EQ(a.ranks().data(), b.ranks().data()) << "one list of members for every rank's world group";
  EXPECT_TRUE(a.same_as(b));
  const core::Group c(std::vector<int>{0, 1, 2}), d(std::vector<int>{0, 1, 2}), e(std::vector<int>{0, 2, 1});
  EXPECT_TRUE(c.same_as(d)) << "same members in the same order, built apart";
  EXPECT_FALSE(c.same_as(e));
  EXPECT_EQ(c.key(), "0,1,2,");
  EXPECT_EQ(core::Group().size(), 0);
  EXPECT_EQ(core::Group::world(4).index_of(3), 3);
}
