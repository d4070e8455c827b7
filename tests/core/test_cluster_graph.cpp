// The cluster graph: devices, link rates, and the fixed routes GPUs take inside and between nodes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>

#include "core/cluster_graph.hpp"
#include "core/units.hpp"

namespace moesys::core {
namespace {

std::string topology(const std::string& name) {
  return std::string(MOESYS_SOURCE_DIR) + "/topologies/" + name + ".json";
}

std::vector<LinkClass> classes(const ClusterGraph& g, const std::vector<int>& r) {
  std::vector<LinkClass> out;
  for (int id : r) out.push_back(g.link(id).cls);
  return out;
}

bool crosses_spine(const ClusterGraph& g, const std::vector<int>& r) {
  return std::any_of(r.begin(), r.end(), [&](int id) { return g.link(id).name.find("spine") != std::string::npos; });
}

bool uses(const ClusterGraph& g, const std::vector<int>& r, const std::string& name) {
  return std::any_of(r.begin(), r.end(), [&](int id) { return g.link(id).name == name; });
}

class A100Graph : public ::testing::Test {
 protected:
  Calibration cal;
  ClusterGraph g{load_cluster_file(topology("dgx-a100-80g")), cal};
  const double nvlink = 300e9 * cal.nvlink_efficiency;
  const double pcie = pcie_bytes_per_s(4, 16) * cal.pcie_efficiency;
  const double nic = 25e9 * cal.nic_efficiency;
};

TEST_F(A100Graph, LinkIdsAreDense) {
  for (std::size_t i = 0; i < g.link_count(); ++i) EXPECT_EQ(g.link(static_cast<int>(i)).id, static_cast<int>(i));
  std::set<std::string> names;
  for (std::size_t i = 0; i < g.link_count(); ++i) names.insert(g.link(static_cast<int>(i)).name);
  EXPECT_EQ(names.size(), g.link_count());  // sim/ uses the names as SimGrid link names
  EXPECT_EQ(g.device(g.gpu(9)).node, 1);
  EXPECT_EQ(g.device(g.gpu(9)).index, 1);
  EXPECT_EQ(g.device(g.leaf(7)).kind, DeviceKind::leaf);
}

TEST_F(A100Graph, GpusInANodeTalkOverNvlink) {
  const auto r = g.route(g.gpu(0), g.gpu(1));
  EXPECT_EQ(classes(g, r), (std::vector<LinkClass>{LinkClass::nvlink, LinkClass::nvlink}));
  EXPECT_DOUBLE_EQ(g.bottleneck_bytes_per_s(r), nvlink);
  EXPECT_EQ(g.latency_s(r), 0.0);
}

TEST_F(A100Graph, DirectionsAreSeparateLinks) {
  const auto there = g.route(g.gpu(0), g.gpu(9)), back = g.route(g.gpu(9), g.gpu(0));
  std::set<int> a(there.begin(), there.end());
  for (int id : back) EXPECT_EQ(a.count(id), 0u) << g.link(id).name;
}

TEST_F(A100Graph, OtherRailGoesThroughTheSpine) {
  // GPU 0 of node 0 (NIC 0, rail 0) to GPU 9 = node 1 local 1 (NIC 1, rail 1): no PXN, so via the spine.
  const auto r = g.route(g.gpu(0), g.gpu(9));
  EXPECT_EQ(classes(g, r),
            (std::vector<LinkClass>{LinkClass::pcie, LinkClass::pcie, LinkClass::nic, LinkClass::fabric,
                                    LinkClass::fabric, LinkClass::nic, LinkClass::pcie, LinkClass::pcie}));
  EXPECT_TRUE(uses(g, r, "n0.nic0-pcie0:down"));  // "<a>-<b>:up" runs from a to b
  EXPECT_TRUE(uses(g, r, "n1.nic1-pcie0:up"));
  EXPECT_TRUE(crosses_spine(g, r));
  EXPECT_DOUBLE_EQ(g.latency_s(r), 4e-6);  // NIC->leaf, leaf->spine, spine->leaf, leaf->NIC
}

TEST_F(A100Graph, SameRailStaysOnTheLeaf) {
  const auto r = g.route(g.gpu(3), g.gpu(5 * 8 + 3));
  EXPECT_FALSE(crosses_spine(g, r));
  EXPECT_EQ(r.size(), 6u);
  EXPECT_TRUE(uses(g, r, "n0.nic3-leaf3:up"));
  EXPECT_TRUE(uses(g, r, "n5.nic3-leaf3:down"));
}

TEST_F(A100Graph, InterNodeBottleneckIsTheNic) {
  EXPECT_DOUBLE_EQ(g.bottleneck_bytes_per_s(g.route(g.gpu(0), g.gpu(9))), std::min(nic, pcie));
  EXPECT_DOUBLE_EQ(g.bottleneck_bytes_per_s(g.route(g.gpu(2), g.gpu(10))), nic);
}

TEST_F(A100Graph, GpuToCpuUsesPcie) {
  const auto r = g.route(g.gpu(13), g.cpu(1));
  EXPECT_EQ(classes(g, r), (std::vector<LinkClass>{LinkClass::pcie, LinkClass::pcie}));
  EXPECT_TRUE(uses(g, r, "n1.gpu5-pcie2:up"));
  EXPECT_TRUE(uses(g, r, "n1.pcie2-cpu:up"));
  EXPECT_DOUBLE_EQ(g.bottleneck_bytes_per_s(r), pcie);
  EXPECT_EQ(classes(g, g.route(g.cpu(1), g.gpu(13))), (std::vector<LinkClass>{LinkClass::pcie, LinkClass::pcie}));
}

TEST_F(A100Graph, SsdReadsAndWritesAtTheirOwnRates) {
  const auto write = g.route(g.gpu(0), g.ssd(0));
  EXPECT_EQ(classes(g, write), (std::vector<LinkClass>{LinkClass::pcie, LinkClass::pcie, LinkClass::nvme}));
  EXPECT_DOUBLE_EQ(g.bottleneck_bytes_per_s(write), 10e9);
  const auto read = g.route(g.ssd(2), g.cpu(2));
  ASSERT_EQ(read.size(), 1u);
  EXPECT_EQ(g.link(read[0]).name, "n2.nvme:read");
  EXPECT_DOUBLE_EQ(g.link(read[0]).bytes_per_s, 25e9);
}

TEST_F(A100Graph, OtherPairsUseShortestPathsWithoutForwardingThroughGpus) {
  const auto r = g.route(g.cpu(0), g.cpu(4));
  ASSERT_FALSE(r.empty());
  for (int id : r) EXPECT_EQ(g.link(id).name.find("gpu"), std::string::npos) << g.link(id).name;
  EXPECT_FALSE(crosses_spine(g, r));  // any NIC reaches the same NIC index on node 4 through one leaf
  EXPECT_TRUE(g.route(g.gpu(0), g.gpu(0)).empty());
  EXPECT_TRUE(std::isinf(g.bottleneck_bytes_per_s({})));
}

TEST_F(A100Graph, LeafUplinkCarriesItsDownlinks) {
  const auto r = g.route(g.leaf(2), g.spine());
  ASSERT_EQ(r.size(), 1u);
  EXPECT_DOUBLE_EQ(g.link(r[0]).bytes_per_s, 6 * nic);  // 6 nodes on the leaf of rail 2, non-blocking
}

TEST(ClusterGraph, OversubscribedFatTree) {
  ClusterGeneratorOptions o;
  o.nodes = 4;
  ClusterSpec spec = generate_cluster(o);
  spec.fabric.kind = FabricKind::fat_tree;
  spec.fabric.nodes_per_leaf = 2;
  spec.fabric.oversubscription = 2;
  Calibration cal;
  ClusterGraph g(spec, cal);
  const double nic = 25e9 * cal.nic_efficiency;
  EXPECT_FALSE(crosses_spine(g, g.route(g.gpu(0), g.gpu(15))));  // nodes 0 and 1 share leaf 0
  EXPECT_TRUE(crosses_spine(g, g.route(g.gpu(0), g.gpu(16))));   // node 2 is on leaf 1
  EXPECT_DOUBLE_EQ(g.link(g.route(g.leaf(1), g.spine())[0]).bytes_per_s, 2 * 8 * nic / 2);
}

TEST(ClusterGraph, NicBehindAnotherSwitchIsReachedThroughTheCpu) {
  ClusterGeneratorOptions o;
  o.nodes = 2;
  o.nics_per_node = 2;  // NIC 0 serves GPUs 0-3 and sits behind switch 0
  ClusterGraph g(generate_cluster(o), Calibration{});
  const auto r = g.route(g.gpu(3), g.gpu(8 + 3));
  EXPECT_TRUE(uses(g, r, "n0.gpu3-pcie1:up"));
  EXPECT_TRUE(uses(g, r, "n0.pcie1-cpu:up"));
  EXPECT_TRUE(uses(g, r, "n0.pcie0-cpu:down"));
  EXPECT_TRUE(uses(g, r, "n0.nic0-pcie0:down"));
  EXPECT_TRUE(uses(g, r, "n1.nic0-pcie0:up"));
  EXPECT_TRUE(uses(g, r, "n1.gpu3-pcie1:down"));
}

TEST(ClusterGraph, PcieOnlyNodesRouteThroughSwitchesAndCpu) {
  ClusterSpec spec = generate_cluster({});
  spec.node.intra_node = {IntraNodeKind::pcie_only, 0};
  Calibration cal;
  ClusterGraph g(spec, cal);
  EXPECT_EQ(classes(g, g.route(g.gpu(0), g.gpu(1))), (std::vector<LinkClass>{LinkClass::pcie, LinkClass::pcie}));
  const auto r = g.route(g.gpu(0), g.gpu(2));
  EXPECT_EQ(r.size(), 4u);
  EXPECT_TRUE(uses(g, r, "n0.pcie0-cpu:up"));
  EXPECT_TRUE(uses(g, r, "n0.pcie1-cpu:down"));
}

TEST(ClusterGraph, NoSsdTier) {
  ClusterSpec spec = generate_cluster({});
  spec.node.ssd = {};
  ClusterGraph g(spec, Calibration{});
  EXPECT_THROW(g.ssd(0), std::out_of_range);
  EXPECT_EQ(g.route(g.gpu(0), g.cpu(0)).size(), 2u);
}

TEST(ClusterGraph, Builds4096Gpus) {
  ClusterGeneratorOptions o;
  o.nodes = 512;
  ClusterGraph g(generate_cluster(o), Calibration{});
  EXPECT_EQ(g.spec().total_gpus(), 4096);
  EXPECT_EQ(g.spec().leaf_count(), 8 * 16);
  const auto r = g.route(g.gpu(0), g.gpu(4095));
  EXPECT_TRUE(crosses_spine(g, r));
  EXPECT_EQ(r.size(), 8u);
  EXPECT_FALSE(crosses_spine(g, g.route(g.gpu(1), g.gpu(31 * 8 + 1))));  // nodes 0..31 share a leaf per rail
  EXPECT_TRUE(crosses_spine(g, g.route(g.gpu(1), g.gpu(32 * 8 + 1))));
}

}  // namespace
}  // namespace moesys::core
