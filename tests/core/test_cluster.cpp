// Cluster descriptions: shipped topologies, round trips, the generator, leaves, and one test per bad input.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "core/cluster.hpp"
#include "core/error.hpp"
#include "core/units.hpp"

namespace moesys::core {
namespace {

using nlohmann::json;

std::string topology(const std::string& name) {
  return std::string(MOESYS_SOURCE_DIR) + "/topologies/" + name + ".json";
}

json read_json(const std::string& path) {
  std::ifstream in(path);
  return json::parse(in);
}

json a100() {
  return read_json(topology("dgx-a100-80g"));
}

// parse_cluster must throw a ConfigError at exactly `path`, on one line, mentioning `phrase`.
::testing::AssertionResult rejects(const json& j, const std::string& path, const std::string& phrase) {
  try {
    parse_cluster(j, "topologies/x.json");
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    if (e.json_path() != path) return ::testing::AssertionFailure() << "path " << e.json_path() << " in: " << what;
    if (what.find("topologies/x.json: " + path + ": ") != 0) return ::testing::AssertionFailure() << "prefix: " << what;
    if (what.find(phrase) == std::string::npos)
      return ::testing::AssertionFailure() << "no '" << phrase << "' in: " << what;
    if (what.find('\n') != std::string::npos) return ::testing::AssertionFailure() << "newline in: " << what;
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "accepted; expected an error at " << path;
}

// ---------------------------------------------------------------------------------------------- shipped files
TEST(Cluster, ShippedTopologiesLoadAndRoundTrip) {
  for (const char* name : {"dgx-a100-80g", "dgx-a100-40g", "dgx-h100", "dgx-h200", "hgx-h800"}) {
    SCOPED_TRACE(name);
    const ClusterSpec c = load_cluster_file(topology(name));
    EXPECT_EQ(c.name, name);
    EXPECT_FALSE(c.description.empty());
    const json j = cluster_to_json(c);
    EXPECT_EQ(j, read_json(topology(name)));  // the file is already in canonical form
    EXPECT_EQ(cluster_to_json(parse_cluster(j, "round-trip")), j);
  }
}

TEST(Cluster, A100ValuesAreInBaseUnits) {
  const ClusterSpec c = load_cluster_file(topology("dgx-a100-80g"));
  EXPECT_EQ(c.nodes, 6);
  EXPECT_EQ(c.total_gpus(), 48);
  EXPECT_EQ(c.node.gpu.hbm_bytes, 80 * kGiB);
  EXPECT_EQ(c.node.gpu.hbm_bytes_per_s, 2039e9);
  EXPECT_EQ(c.node.gpu.peak(Dtype::fp16), 312e12);
  EXPECT_EQ(c.node.gpu.peak(Dtype::fp32), 19.5e12);
  EXPECT_THROW(c.node.gpu.peak(Dtype::fp8), std::out_of_range);
  EXPECT_EQ(c.node.nics.bytes_per_s, 25e9);  // 200 Gb/s
  EXPECT_EQ(c.node.intra_node.bytes_per_s_per_gpu, 300e9);
  EXPECT_EQ(c.node.host_memory.capacity_bytes, 2 * kTiB);
  EXPECT_EQ(c.node.ssd.capacity_bytes, 15 * kTiB);
  EXPECT_EQ(c.node.pcie.bytes_per_s(), pcie_bytes_per_s(4, 16));
  EXPECT_EQ(c.fabric.kind, FabricKind::rail_optimized);
  EXPECT_DOUBLE_EQ(c.fabric.hop_latency_s, 1e-6);
  EXPECT_EQ(c.node.nic_of_gpu(5), 5);
  EXPECT_EQ(c.node.switch_of_gpu(5), 2);
  EXPECT_EQ(c.node.switch_of_nic(5), 2);
}

TEST(Cluster, H100HasFp8) {
  const ClusterSpec c = load_cluster_file(topology("dgx-h100"));
  EXPECT_EQ(c.node.gpu.peak(Dtype::fp8), 1979e12);
  EXPECT_EQ(c.node.nics.bytes_per_s, 50e9);
  EXPECT_EQ(c.node.pcie.generation, 5);
}

// The figures the files cite (see their descriptions), in base units.
TEST(Cluster, H200HasMoreAndFasterHbmThanH100) {
  const ClusterSpec c = load_cluster_file(topology("dgx-h200"));
  const ClusterSpec h100 = load_cluster_file(topology("dgx-h100"));
  EXPECT_EQ(c.node.gpu.model, "H200-SXM5-141GB");
  EXPECT_EQ(c.total_gpus(), 32);
  EXPECT_EQ(c.node.gpu.hbm_bytes, 141 * kGiB);
  EXPECT_EQ(c.node.gpu.hbm_bytes_per_s, 4800e9);  // 4.8 TB/s
  EXPECT_EQ(c.node.gpu.peak(Dtype::fp32), 67e12);
  EXPECT_EQ(c.node.gpu.peak(Dtype::tf32), 494e12);
  EXPECT_EQ(c.node.gpu.peak(Dtype::fp16), 989e12);
  EXPECT_EQ(c.node.gpu.peak(Dtype::bf16), 989e12);
  EXPECT_EQ(c.node.gpu.peak(Dtype::fp8), 1979e12);
  EXPECT_EQ(c.node.gpu.peak_flop_per_s, h100.node.gpu.peak_flop_per_s);  // the same GH100 compute
  EXPECT_EQ(c.node.intra_node.kind, IntraNodeKind::nvswitch);
  EXPECT_EQ(c.node.intra_node.bytes_per_s_per_gpu, 450e9);  // 900 GB/s both directions
  EXPECT_EQ(c.node.nics.count, 8);
  EXPECT_EQ(c.node.nics.bytes_per_s, 50e9);  // 400 Gb/s
  EXPECT_EQ(c.node.nic_of_gpu(6), 6);
  EXPECT_EQ(c.node.pcie.generation, 5);
  EXPECT_EQ(c.node.host_memory.capacity_bytes, 2 * kTiB);
  EXPECT_EQ(c.node.ssd.capacity_bytes, 28 * kTiB);  // 8 x 3.84 TB
}

TEST(Cluster, H800IsAnH100WithLessThanHalfTheNvlink) {
  const ClusterSpec c = load_cluster_file(topology("hgx-h800"));
  const ClusterSpec h100 = load_cluster_file(topology("dgx-h100"));
  EXPECT_EQ(c.node.gpu.model, "H800-SXM5-80GB");
  EXPECT_EQ(c.node.gpu.hbm_bytes, 80 * kGiB);
  EXPECT_EQ(c.node.gpu.hbm_bytes_per_s, 3352e9);
  EXPECT_EQ(c.node.gpu.peak(Dtype::fp32), 67e12);
  EXPECT_EQ(c.node.gpu.peak(Dtype::tf32), 494e12);
  EXPECT_EQ(c.node.gpu.peak(Dtype::fp16), 989e12);
  EXPECT_EQ(c.node.gpu.peak(Dtype::bf16), 989e12);
  EXPECT_EQ(c.node.gpu.peak(Dtype::fp8), 1979e12);
  EXPECT_EQ(c.node.gpu.peak_flop_per_s, h100.node.gpu.peak_flop_per_s);
  EXPECT_EQ(c.node.intra_node.kind, IntraNodeKind::nvswitch);
  EXPECT_EQ(c.node.intra_node.bytes_per_s_per_gpu, 200e9);  // 400 GB/s both directions
  EXPECT_LT(c.node.intra_node.bytes_per_s_per_gpu, h100.node.intra_node.bytes_per_s_per_gpu / 2);
  EXPECT_EQ(c.node.nics.count, 8);
  EXPECT_EQ(c.node.nics.bytes_per_s, 50e9);  // 400 Gb/s, one per GPU
  EXPECT_EQ(c.node.nic_of_gpu(3), 3);
  EXPECT_EQ(c.node.pcie.generation, 5);
  EXPECT_EQ(c.fabric.kind, FabricKind::rail_optimized);  // one plane per NIC
  EXPECT_EQ(c.fabric.nodes_per_leaf, 32);
}

TEST(Cluster, OptionalBlocksDefault) {
  json j = a100();
  j.erase("fabric");
  j.erase("description");
  j["node"].erase("ssd");
  const ClusterSpec c = parse_cluster(j, "x");
  EXPECT_EQ(c.fabric.nodes_per_leaf, FabricSpec{}.nodes_per_leaf);
  EXPECT_EQ(c.node.ssd.capacity_bytes, 0);
  EXPECT_FALSE(cluster_to_json(c)["node"].contains("ssd"));
  EXPECT_EQ(cluster_to_json(parse_cluster(cluster_to_json(c), "x")), cluster_to_json(c));
}

TEST(Cluster, PcieOnlyRoundTrips) {
  json j = a100();
  j["node"]["intra_node"] = {{"kind", "pcie_only"}};
  j["fabric"]["kind"] = "fat-tree";
  const ClusterSpec c = parse_cluster(j, "x");
  EXPECT_EQ(c.node.intra_node.kind, IntraNodeKind::pcie_only);
  EXPECT_EQ(cluster_to_json(c), j);
}

TEST(Cluster, Dtypes) {
  EXPECT_EQ(parse_dtype("bf16"), Dtype::bf16);
  EXPECT_STREQ(to_string(Dtype::tf32), "tf32");
  EXPECT_EQ(dtype_bytes(Dtype::fp16), 2);
  EXPECT_EQ(dtype_bytes(Dtype::fp8), 1);
  EXPECT_THROW(parse_dtype("int8"), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------- generator
TEST(ClusterGenerator, DefaultMatchesTheShippedA100Cluster) {
  const ClusterSpec c = generate_cluster({});
  EXPECT_EQ(c.name, "generated-6x8-a100-80g");
  json shipped = a100();
  shipped.erase("description");
  shipped["name"] = c.name;
  EXPECT_EQ(cluster_to_json(c), shipped);
}

TEST(ClusterGenerator, FewNicsSitWithTheirFirstGpu) {
  ClusterGeneratorOptions o;
  o.nodes = 2;
  o.nics_per_node = 2;
  o.gpu = "h100";
  const ClusterSpec c = generate_cluster(o);
  EXPECT_EQ(c.node.nics.gpus, (std::vector<std::vector<int>>{{0, 1, 2, 3}, {4, 5, 6, 7}}));
  ASSERT_EQ(c.node.pcie.switches.size(), 4u);
  EXPECT_EQ(c.node.switch_of_nic(0), 0);
  EXPECT_EQ(c.node.switch_of_nic(1), 2);
  EXPECT_EQ(c.node.pcie.switches[1].nics.size(), 0u);
  EXPECT_EQ(c.node.gpu.peak(Dtype::fp8), 1979e12);
}

TEST(ClusterGenerator, ShapesAndGpus) {
  ClusterGeneratorOptions o;
  o.nodes = 3;
  o.gpus_per_node = 4;
  o.nics_per_node = 4;
  o.nic_gbits_per_s = 100;
  o.gpu = "a100-40g";
  const ClusterSpec c = generate_cluster(o);
  EXPECT_EQ(c.total_gpus(), 12);
  EXPECT_EQ(c.node.pcie.switches.size(), 2u);
  EXPECT_EQ(c.node.gpu.hbm_bytes, 40 * kGiB);
  EXPECT_EQ(c.node.host_memory.capacity_bytes, 1 * kTiB);
  EXPECT_EQ(c.node.nics.bytes_per_s, 12.5e9);
}

// --gpu h200 and --gpu h800 build the nodes of the shipped files (their 400 Gb/s NICs included, without
// --nic-gbps): the same figures from either route.
TEST(ClusterGenerator, H200AndH800MatchTheShippedFiles) {
  for (const auto& [gpu, file] : {std::pair{"h200", "dgx-h200"}, std::pair{"h800", "hgx-h800"}}) {
    SCOPED_TRACE(gpu);
    ClusterGeneratorOptions o;
    o.nodes = 4;
    o.gpu = gpu;
    const ClusterSpec c = generate_cluster(o);
    EXPECT_EQ(c.name, std::string("generated-4x8-") + gpu);
    json shipped = read_json(topology(file));
    shipped.erase("description");
    shipped["name"] = c.name;
    EXPECT_EQ(cluster_to_json(c), shipped);
  }
}

// Without --nic-gbps a node gets its preset's NICs (HDR on DGX A100, NDR on the Hopper nodes); the flag wins.
TEST(ClusterGenerator, NicRateDefaultsToThePresetsNode) {
  for (const auto& [gpu, gbits] : {std::pair{"a100-80g", 200.0}, std::pair{"a100-40g", 200.0},
                                   std::pair{"h100", 400.0}, std::pair{"h200", 400.0}, std::pair{"h800", 400.0}}) {
    SCOPED_TRACE(gpu);
    ClusterGeneratorOptions o;
    o.gpu = gpu;
    EXPECT_EQ(generate_cluster(o).node.nics.bytes_per_s, gbits * 1e9 / 8);
    o.nic_gbits_per_s = 100;
    EXPECT_EQ(generate_cluster(o).node.nics.bytes_per_s, 12.5e9);
  }
}

TEST(ClusterGenerator, NicsMustDivideGpus) {
  ClusterGeneratorOptions o;
  o.nics_per_node = 3;
  try {
    generate_cluster(o);
    FAIL() << "accepted 3 NICs for 8 GPUs";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.json_path(), "--nics-per-node");
    EXPECT_EQ(std::string(e.what()).rfind("<flags>: --nics-per-node: NICs that do not divide the GPUs", 0), 0u)
        << e.what();
  }
}

TEST(ClusterGenerator, UnknownGpuListsTheValidOnes) {
  ClusterGeneratorOptions o;
  o.gpu = "v100";
  try {
    generate_cluster(o);
    FAIL() << "accepted v100";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.json_path(), "--gpu");
    EXPECT_EQ(std::string(e.what()),
              "<flags>: --gpu: expected one of a100-80g, a100-40g, h100, h200, h800, got \"v100\"");
  }
}

// ---------------------------------------------------------------------------------------------- leaves
TEST(Cluster, RailOptimizedLeaves) {
  ClusterSpec c = generate_cluster({});
  EXPECT_EQ(c.leaf_count(), 8);  // 6 nodes fit one leaf per rail
  EXPECT_EQ(c.leaf_of(3, 5), 5);
  c.nodes = 70;  // 3 leaves per rail
  EXPECT_EQ(c.leaf_count(), 24);
  EXPECT_EQ(c.leaf_of(65, 2), 2 * 3 + 2);
  EXPECT_EQ(c.leaf_of(31, 2), 2 * 3 + 0);
  EXPECT_EQ(c.leaf_of(32, 2), 2 * 3 + 1);
  EXPECT_THROW(c.leaf_of(70, 0), std::out_of_range);
}

TEST(Cluster, FatTreeLeaves) {
  ClusterSpec c = generate_cluster({});
  c.fabric.kind = FabricKind::fat_tree;
  c.fabric.nodes_per_leaf = 4;
  EXPECT_EQ(c.leaf_count(), 2);
  EXPECT_EQ(c.leaf_of(3, 7), 0);
  EXPECT_EQ(c.leaf_of(4, 0), 1);
}

// ---------------------------------------------------------------------------------------------- bad input
TEST(ClusterErrors, MissingFile) {
  try {
    load_cluster_file("/nonexistent/cluster.json");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "/nonexistent/cluster.json: cannot open file");
  }
}

TEST(ClusterErrors, MalformedJsonGivesTheByte) {
  const std::string path = ::testing::TempDir() + "moesys_malformed_cluster.json";
  std::ofstream(path) << "{\"name\": \"x\",\n \"nodes\": 6,, }";
  try {
    load_cluster_file(path);
    FAIL();
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.rfind(path + ": (root): malformed JSON at byte 27", 0), 0u) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
  std::remove(path.c_str());
}

TEST(ClusterErrors, RootNotAnObject) {
  EXPECT_TRUE(rejects(json::array(), "(root)", "expected an object, got []"));
}

TEST(ClusterErrors, UnknownRootKey) {
  json j = a100();
  j["about"] = "x";
  EXPECT_TRUE(rejects(j, "about", "unknown key; allowed keys: name, description, nodes, node, fabric"));
}

TEST(ClusterErrors, UnknownNestedKey) {
  json j = a100();
  j["node"]["gpu"]["hbm_gb"] = 80;
  EXPECT_TRUE(rejects(j, "node.gpu.hbm_gb", "unknown key; allowed keys: model, hbm_gib"));
}

TEST(ClusterErrors, UnknownKeyInArrayElement) {
  json j = a100();
  j["node"]["pcie"]["switches"][1]["cpus"] = json::array();
  EXPECT_TRUE(rejects(j, "node.pcie.switches[1].cpus", "unknown key"));
}

TEST(ClusterErrors, UnknownDtype) {
  json j = a100();
  j["node"]["gpu"]["peak_tflops"]["int8"] = 624;
  EXPECT_TRUE(rejects(j, "node.gpu.peak_tflops.int8", "allowed keys: fp32, tf32, fp16, bf16, fp8"));
}

TEST(ClusterErrors, WrongTypeString) {
  json j = a100();
  j["node"]["gpus"] = "eight";
  EXPECT_TRUE(rejects(j, "node.gpus", "expected a positive integer, got \"eight\""));
}

TEST(ClusterErrors, WrongTypeObject) {
  json j = a100();
  j["node"]["gpu"] = 5;
  EXPECT_TRUE(rejects(j, "node.gpu", "expected an object, got 5"));
}

TEST(ClusterErrors, WrongTypeBool) {
  json j = a100();
  j["node"]["ssd"]["read_gbytes_per_s"] = true;
  EXPECT_TRUE(rejects(j, "node.ssd.read_gbytes_per_s", "expected a positive number, got true"));
}

TEST(ClusterErrors, WrongTypeArray) {
  json j = a100();
  j["node"]["nics"]["gpus"] = {{"a", 1}};
  EXPECT_TRUE(rejects(j, "node.nics.gpus", "expected an array of GPU lists"));
}

TEST(ClusterErrors, EmptyName) {
  json j = a100();
  j["name"] = "";
  EXPECT_TRUE(rejects(j, "name", "expected a non-empty string"));
}

TEST(ClusterErrors, MissingRequiredField) {
  json j = a100();
  j["node"]["host_memory"].erase("capacity_gib");
  EXPECT_TRUE(rejects(j, "node.host_memory.capacity_gib", "missing required field (expected a positive number)"));
}

TEST(ClusterErrors, MissingBlock) {
  json j = a100();
  j.erase("node");
  EXPECT_TRUE(rejects(j, "node", "missing required field"));
}

TEST(ClusterErrors, MissingDtype) {
  json j = a100();
  j["node"]["gpu"]["peak_tflops"].erase("bf16");
  EXPECT_TRUE(rejects(j, "node.gpu.peak_tflops.bf16", "missing required field"));
}

TEST(ClusterErrors, PartialSsd) {
  json j = a100();
  j["node"]["ssd"].erase("write_gbytes_per_s");
  EXPECT_TRUE(rejects(j, "node.ssd.write_gbytes_per_s", "missing required field"));
}

TEST(ClusterErrors, NegativeBandwidth) {
  json j = a100();
  j["node"]["nics"]["gbits_per_s"] = -5;
  try {
    parse_cluster(j, "topologies/x.json");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "topologies/x.json: node.nics.gbits_per_s: expected a positive number, got -5");
  }
}

TEST(ClusterErrors, ZeroNvlinkBandwidth) {
  json j = a100();
  j["node"]["intra_node"]["gbytes_per_s_per_gpu"] = 0;
  EXPECT_TRUE(rejects(j, "node.intra_node.gbytes_per_s_per_gpu", "expected a positive number, got 0"));
}

TEST(ClusterErrors, ZeroCapacity) {
  json j = a100();
  j["node"]["gpu"]["hbm_gib"] = 0;
  EXPECT_TRUE(rejects(j, "node.gpu.hbm_gib", "expected a positive number, got 0"));
}

TEST(ClusterErrors, ZeroCount) {
  json j = a100();
  j["nodes"] = 0;
  EXPECT_TRUE(rejects(j, "nodes", "expected a positive integer, got 0"));
}

TEST(ClusterErrors, FractionalCount) {
  json j = a100();
  j["nodes"] = 2.5;
  EXPECT_TRUE(rejects(j, "nodes", "expected a positive integer, got 2.5"));
}

TEST(ClusterErrors, PcieGeneration) {
  json j = a100();
  j["node"]["pcie"]["generation"] = 7;
  EXPECT_TRUE(rejects(j, "node.pcie.generation", "expected a PCIe generation 3, 4, 5 or 6, got 7"));
}

TEST(ClusterErrors, IntraNodeKind) {
  json j = a100();
  j["node"]["intra_node"]["kind"] = "nvlink-mesh";
  EXPECT_TRUE(rejects(j, "node.intra_node.kind", "expected one of \"nvswitch\", \"pcie_only\""));
}

TEST(ClusterErrors, PcieOnlyWithBandwidth) {
  json j = a100();
  j["node"]["intra_node"]["kind"] = "pcie_only";
  EXPECT_TRUE(rejects(j, "node.intra_node.gbytes_per_s_per_gpu", "unknown key; allowed keys: kind"));
}

TEST(ClusterErrors, GpuIndexOutOfRangeInSwitch) {
  json j = a100();
  j["node"]["pcie"]["switches"][2]["gpus"][0] = 8;
  EXPECT_TRUE(rejects(j, "node.pcie.switches[2].gpus[0]", "expected a GPU index in 0..7, got 8"));
}

TEST(ClusterErrors, GpuIndexOutOfRangeInNic) {
  json j = a100();
  j["node"]["nics"]["gpus"][3][0] = -1;
  EXPECT_TRUE(rejects(j, "node.nics.gpus[3][0]", "expected a GPU index in 0..7, got -1"));
}

TEST(ClusterErrors, NicIndexOutOfRangeInSwitch) {
  json j = a100();
  j["node"]["pcie"]["switches"][0]["nics"][1] = 8;
  EXPECT_TRUE(rejects(j, "node.pcie.switches[0].nics[1]", "expected a NIC index in 0..7, got 8"));
}

TEST(ClusterErrors, GpuWithNoRoute) {
  json j = a100();
  j["node"]["nics"]["gpus"][5] = json::array();
  EXPECT_TRUE(rejects(j, "node.nics.gpus", "GPU 5 is served by no NIC, so it has no route off the node"));
}

TEST(ClusterErrors, GpuServedByTwoNics) {
  json j = a100();
  j["node"]["nics"]["gpus"][1] = {0};
  EXPECT_TRUE(rejects(j, "node.nics.gpus[1][0]", "GPU 0 is served by two NICs (0 and 1)"));
}

TEST(ClusterErrors, NicsThatDoNotDivideTheGpus) {
  json j = a100();
  j["node"]["nics"]["count"] = 3;
  j["node"]["nics"]["gpus"] = {{0, 1, 2}, {3, 4, 5}, {6, 7}};
  EXPECT_TRUE(rejects(j, "node.nics.count", "NICs that do not divide the GPUs"));
}

TEST(ClusterErrors, NicListLengthDiffersFromCount) {
  json j = a100();
  j["node"]["nics"]["count"] = 4;
  EXPECT_TRUE(rejects(j, "node.nics.gpus", "expected one GPU list per NIC (4 lists), got 8"));
}

TEST(ClusterErrors, UnevenNicShare) {
  json j = a100();
  j["node"]["nics"]["count"] = 4;
  j["node"]["nics"]["gpus"] = {{0, 1, 2}, {3}, {4, 5}, {6, 7}};
  j["node"]["pcie"]["switches"][2]["nics"] = json::array();
  j["node"]["pcie"]["switches"][3]["nics"] = json::array();
  EXPECT_TRUE(rejects(j, "node.nics.gpus[0]", "expected 2 GPUs (the 8 GPUs shared evenly by 4 NICs), got 3"));
}

TEST(ClusterErrors, GpuInNoPcieSwitch) {
  json j = a100();
  j["node"]["pcie"]["switches"][3]["gpus"] = {6};
  EXPECT_TRUE(rejects(j, "node.pcie.switches", "GPU 7 is behind no PCIe switch"));
}

TEST(ClusterErrors, GpuInTwoPcieSwitches) {
  json j = a100();
  j["node"]["pcie"]["switches"][1]["gpus"] = {1, 3};
  EXPECT_TRUE(rejects(j, "node.pcie.switches[1].gpus[0]", "GPU 1 is already behind PCIe switch 0"));
}

TEST(ClusterErrors, NicInTwoPcieSwitches) {
  json j = a100();
  j["node"]["pcie"]["switches"][3]["nics"] = {6, 7, 0};
  EXPECT_TRUE(rejects(j, "node.pcie.switches[3].nics[2]", "NIC 0 is already behind PCIe switch 0"));
}

TEST(ClusterErrors, NoPcieSwitches) {
  json j = a100();
  j["node"]["pcie"]["switches"] = json::array();
  EXPECT_TRUE(rejects(j, "node.pcie.switches", "expected at least one PCIe switch"));
}

TEST(ClusterErrors, OversubscriptionBelowOne) {
  json j = a100();
  j["fabric"]["oversubscription"] = 0.5;
  EXPECT_TRUE(rejects(j, "fabric.oversubscription", "expected a number in [1, 1000000] (1 = non-blocking), got 0.5"));
}

TEST(ClusterErrors, NodesPerLeafBelowOne) {
  json j = a100();
  j["fabric"]["nodes_per_leaf"] = 0;
  EXPECT_TRUE(rejects(j, "fabric.nodes_per_leaf", "expected an integer >= 1, got 0"));
}

TEST(ClusterErrors, NegativeHopLatency) {
  json j = a100();
  j["fabric"]["hop_latency_us"] = -1;
  EXPECT_TRUE(rejects(j, "fabric.hop_latency_us", "expected a number in [0, 1000000] (at most a second), got -1"));
}

TEST(ClusterErrors, UnknownFabricKind) {
  json j = a100();
  j["fabric"]["kind"] = "torus";
  EXPECT_TRUE(rejects(j, "fabric.kind", "expected one of \"rail-optimized\", \"fat-tree\", got \"torus\""));
}

TEST(ClusterErrors, LongValuesAreCutShort) {
  json j = a100();
  j["nodes"] = std::string(500, 'x');
  try {
    parse_cluster(j, "f");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_LT(std::string(e.what()).size(), 120u) << e.what();
  }
}

}  // namespace
}  // namespace moesys::core
