// NCCL-style protocols and algorithms of the simulator against closed forms: LL's latency and half bandwidth,
// LL128 in the middle sizes, the tree's chain-plus-depth latency, NVLS's one-pass traffic and NVLS-tree's extra
// slice and rail tree, all-to-all latency that grows with peers and nodes, and the automatic choice taking the
// fastest candidate. Every simulation runs in its own process.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "fork_run.hpp"
#include "sim/collectives.hpp"
#include "sim/progress_load.hpp"
#include "sim/simulation.hpp"

using namespace moesys;

namespace {

core::ClusterSpec cluster(int nodes, const std::string& gpu = "a100-80g") {
  core::ClusterGeneratorOptions o;
  o.nodes = nodes;
  o.gpu = gpu;
  return core::generate_cluster(o);
}

// Simulated time of one collective over all GPUs of `spec`, in a child process.
double time_of(const core::ClusterSpec& spec, const core::Calibration& cal, sim::CollectiveOp op, double bytes,
               core::CollectiveAlgo algo) {
  return test::run_in_child([&] {
           sim::SimOptions opt;
           opt.calibration = cal;
           double elapsed = 0;
           sim::simulate(
               spec, spec.total_gpus(),
               [&](core::Runtime& rt) {
                 const auto world = core::Group::world(rt.world_size());
                 core::Buffer none;
                 const double t0 = rt.now_s();
                 const auto b = static_cast<std::uint64_t>(bytes);
                 if (op == sim::CollectiveOp::all_reduce) {
                   rt.wait(rt.all_reduce(core::streams::kComm, world, none, b, core::Dtype::fp32, algo));
                 } else {
                   std::vector<std::uint64_t> row(static_cast<std::size_t>(rt.world_size()), b / rt.world_size());
                   rt.wait(rt.all_to_all(core::streams::kComm, world, none, row, none, row, algo));
                 }
                 if (rt.rank() == 0) elapsed = rt.now_s() - t0;
               },
               opt);
           return std::vector<double>{elapsed};
         })
      .at(0);
}

}  // namespace

TEST(CollectiveAlgorithms, ProtocolsTradeLatencyForBandwidth) {
  EXPECT_EQ(sim::protocol_bandwidth_fraction(sim::Protocol::simple), 1.0);
  EXPECT_EQ(sim::protocol_bandwidth_fraction(sim::Protocol::ll128), 120.0 / 128.0);
  EXPECT_EQ(sim::protocol_bandwidth_fraction(sim::Protocol::ll), 0.5);
  core::Calibration cal;
  cal.step_latency_s = 5e-6;
  cal.ll_step_latency_s = 1e-6;
  cal.net_step_latency_s = 3e-6;
  sim::Stage s;
  s.protocol = sim::Protocol::ll;
  s.latency_steps = 10;
  s.net_latency_steps = 2;
  s.fixed_latency_s = 7e-6;
  EXPECT_DOUBLE_EQ(s.latency_s(cal), 10 * 1e-6 + 2 * (1e-6 + 3e-6) + 7e-6);
}

TEST(CollectiveAlgorithms, ASmallRingAllReduceUsesLowLatencySteps) {
  // 64 bytes over 8 GPUs: 14 ring steps of an 8-byte chunk; LL wins, at half the link rate.
  const auto spec = cluster(1);
  core::Calibration cal;
  const double t = time_of(spec, cal, sim::CollectiveOp::all_reduce, 64, core::CollectiveAlgo::ring);
  const double chunk = 8, link = 300e9 * cal.nvlink_efficiency * 0.5;
  const double expected =
      cal.collective_latency_s + 14 * cal.ll_step_latency_s + 14 * chunk / cal.message_rate(link, chunk);
  EXPECT_NEAR(t, expected, expected * 1e-3);
}

TEST(CollectiveAlgorithms, ALargeRingAllReduceUsesSimple) {
  const auto spec = cluster(1);
  core::Calibration cal;
  const double bytes = 1 << 30;
  const double t = time_of(spec, cal, sim::CollectiveOp::all_reduce, bytes, core::CollectiveAlgo::ring);
  const double chunk = bytes / 8, link = 300e9 * cal.nvlink_efficiency;
  const double expected =
      cal.collective_latency_s + 14 * cal.step_latency_s + 14 * chunk / cal.message_rate(link, chunk);
  EXPECT_NEAR(t, expected, expected * 1e-3);
}

TEST(CollectiveAlgorithms, AMiddleSizeRingAllReduceUsesLl128) {
  // 4 MiB over 8 GPUs: LL128's shorter steps beat Simple and its 120/128 payload beats LL's half (closed forms with
  // the default table: 86 us against 132 and 101), so the ring runs LL128 and the automatic choice takes it.
  const auto spec = cluster(1);
  core::Calibration cal;
  const double bytes = 4 << 20, chunk = bytes / 8, link = 300e9 * cal.nvlink_efficiency;
  auto closed_form = [&](double step_s, double fraction) {
    return cal.collective_latency_s + 14 * step_s + 14 * chunk / cal.message_rate(link * fraction, chunk);
  };
  const double ll128 = closed_form(cal.ll128_step_latency_s, 120.0 / 128.0);
  EXPECT_LT(ll128, closed_form(cal.step_latency_s, 1.0));
  EXPECT_LT(ll128, closed_form(cal.ll_step_latency_s, 0.5));
  const double t = time_of(spec, cal, sim::CollectiveOp::all_reduce, bytes, core::CollectiveAlgo::ring);
  EXPECT_NEAR(t, ll128, ll128 * 1e-3);
  EXPECT_DOUBLE_EQ(time_of(spec, cal, sim::CollectiveOp::all_reduce, bytes, core::CollectiveAlgo::automatic), t);
}

TEST(CollectiveAlgorithms, TreeLatencyGrowsWithChainAndDepthNotRanks) {
  // Four nodes of eight: a chain of 8 and a tree of depth 2, up and down; a ring pays 62 steps.
  const auto spec = cluster(4);
  core::Calibration cal;
  const double tree = time_of(spec, cal, sim::CollectiveOp::all_reduce, 8, core::CollectiveAlgo::tree);
  const double ll = cal.ll_step_latency_s;
  const double latency = cal.collective_latency_s + 2 * 7 * ll + 2 * 2 * (ll + cal.net_step_latency_s);
  EXPECT_GT(tree, latency);
  EXPECT_LT(tree, latency * 1.01);
  const double ring = time_of(spec, cal, sim::CollectiveOp::all_reduce, 8, core::CollectiveAlgo::ring);
  EXPECT_GT(ring - cal.collective_latency_s, 2 * (tree - cal.collective_latency_s));
  // The automatic choice takes the faster.
  EXPECT_DOUBLE_EQ(time_of(spec, cal, sim::CollectiveOp::all_reduce, 8, core::CollectiveAlgo::automatic), tree);
}

TEST(CollectiveAlgorithms, NvlsSendsAndReceivesTheBufferOnceAtTheSwitchRate) {
  const auto spec = cluster(1, "h100");
  core::Calibration cal;
  const double bytes = 1 << 30;
  const double nvls = time_of(spec, cal, sim::CollectiveOp::all_reduce, bytes, core::CollectiveAlgo::nvls);
  const double rate = 450e9 * cal.nvlink_efficiency * cal.nvls_efficiency;
  const double expected = cal.collective_latency_s + cal.nvls_latency_s + bytes / cal.message_rate(rate, bytes);
  EXPECT_NEAR(nvls, expected, expected * 1e-3);
  // A ring moves 2(n-1)/n of the buffer at the full port rate: slower while nvls_efficiency > n / (2(n-1)).
  const double ring = time_of(spec, cal, sim::CollectiveOp::all_reduce, bytes, core::CollectiveAlgo::ring);
  EXPECT_LT(nvls, ring);
  EXPECT_DOUBLE_EQ(time_of(spec, cal, sim::CollectiveOp::all_reduce, bytes, core::CollectiveAlgo::automatic), nvls);
}

TEST(CollectiveAlgorithms, NvlsTreeAddsASliceToEachPortAndARailTreeOverTheNetwork) {
  // Two H100 nodes: NVLS in each node sends and receives the buffer and a 1/8 slice more on every port, while each
  // GPU's slice goes up and down a tree of the two nodes along its rail, both at once; the latency is NVLS's fixed
  // cost and the tree's two network steps (up and down a depth of one).
  // With the default table NVLink bounds the call; with a slow network (a fifth of the line rate) the rails do.
  const auto spec = cluster(2, "h100");
  for (double nic_efficiency : {core::Calibration{}.nic_efficiency, 0.2}) {
    core::Calibration cal;
    cal.nic_efficiency = nic_efficiency;
    const double bytes = 1 << 30, slice = bytes / 8;
    const double t = time_of(spec, cal, sim::CollectiveOp::all_reduce, bytes, core::CollectiveAlgo::nvls_tree);
    const double latency =
        cal.collective_latency_s + cal.nvls_latency_s + 2 * (cal.step_latency_s + cal.net_step_latency_s);
    const double nvlink =
        bytes * (1 + 1.0 / 8) / cal.message_rate(450e9 * cal.nvlink_efficiency * cal.nvls_efficiency, bytes);
    const double nic = slice / cal.message_rate(spec.node.nics.bytes_per_s * cal.nic_efficiency, slice, true);
    EXPECT_EQ(nvlink > nic, nic_efficiency > 0.5);
    const double expected = latency + std::max(nvlink, nic);
    EXPECT_NEAR(t, expected, expected * 2e-3) << "NVLink part " << nvlink << " s, network part " << nic << " s";
    // `nvls` on several nodes is NCCL's NVLS-tree.
    EXPECT_DOUBLE_EQ(time_of(spec, cal, sim::CollectiveOp::all_reduce, bytes, core::CollectiveAlgo::nvls), t);
  }
}

TEST(CollectiveAlgorithms, NvlsNeedsNvlinkSharp) {
  EXPECT_FALSE(sim::has_nvlink_sharp(cluster(1, "a100-80g")));
  EXPECT_TRUE(sim::has_nvlink_sharp(cluster(1, "h800")));
  sim::CollectiveCall call;
  call.members = {0, 1, 2, 3, 4, 5, 6, 7};
  call.bytes = 1 << 20;
  EXPECT_THROW(sim::plan_collective(cluster(1), core::Calibration{}, call, core::CollectiveAlgo::nvls),
               std::invalid_argument);
}

TEST(CollectiveAlgorithms, AllToAllLatencyGrowsWithNetworkPeers) {
  core::Calibration cal;
  cal.alltoall_net_peer_latency_s = 2e-6;
  const double bytes = 16 * 8;  // 8 bytes per peer on 16 GPUs: the transfers are negligible beside the latency
  const double one = time_of(cluster(1), cal, sim::CollectiveOp::all_to_all, bytes, core::CollectiveAlgo::direct);
  const double two = time_of(cluster(2), cal, sim::CollectiveOp::all_to_all, bytes, core::CollectiveAlgo::direct);
  // One node: NVLink peers move in parallel, one step. Two nodes: a network step after the receivers' buffer posts
  // have crossed the network, and each GPU's eight peers on the other node are posted in turn.
  const double one_expected = cal.collective_latency_s + cal.step_latency_s;
  const double two_expected = cal.collective_latency_s + cal.step_latency_s + 2 * cal.net_step_latency_s +
                              8 * cal.alltoall_net_peer_latency_s;
  EXPECT_GT(one, one_expected);
  EXPECT_LT(one, one_expected * 1.01);
  EXPECT_GT(two, two_expected);
  EXPECT_LT(two, two_expected * 1.01);
  // Four nodes: 24 peers on other nodes, posted in turn; the network step's latency is paid once.
  const double four = time_of(cluster(4), cal, sim::CollectiveOp::all_to_all, 32 * 8, core::CollectiveAlgo::direct);
  const double four_expected = cal.collective_latency_s + cal.step_latency_s + 2 * cal.net_step_latency_s +
                               24 * cal.alltoall_net_peer_latency_s;
  EXPECT_GT(four, four_expected);
  EXPECT_LT(four, four_expected * 1.01);
}

namespace {
// Rank 0's time for a 4096^3 GEMM issued beside a long all-reduce of `group` on another stream.
double gemm_beside_all_reduce(const core::ClusterSpec& spec, const core::Calibration& cal, std::vector<int> group) {
  return test::run_in_child([&] {
           sim::SimOptions opt;
           opt.calibration = cal;
           double gemm = 0;
           const core::Group g(group);
           sim::simulate(
               spec, spec.total_gpus(),
               [&](core::Runtime& rt) {
                 if (g.index_of(rt.rank()) < 0) return;
                 core::Buffer none;
                 auto ar = rt.all_reduce(core::streams::kComm, g, none, 4ull << 30, core::Dtype::fp32);
                 core::GemmOp op;
                 op.m = op.n = op.k = 4096;
                 const double t0 = rt.now_s();
                 rt.wait(rt.compute(core::streams::kCompute, op, "gemm"));
                 if (rt.rank() == 0) gemm = rt.now_s() - t0;
                 rt.wait(ar);
               },
               opt);
           return std::vector<double>{gemm};
         })
      .at(0);
}

core::Calibration without_interference() {
  core::Calibration cal;
  cal.comm_kernel_sms = 0;
  cal.comm_hbm_traffic = 0;
  return cal;
}
}  // namespace

TEST(CollectiveAlgorithms, ACommunicationKernelSlowsAConcurrentGemmByItsShare) {
  // With a fixed share, the GEMM runs on the (1 - share) of the GPU the communication kernel leaves, for as long as
  // they overlap (the all-reduce of 4 GiB outlasts it).
  const auto spec = cluster(1);
  core::Calibration fixed;
  fixed.comm_sm_share = 0.2;
  const double alone = gemm_beside_all_reduce(spec, without_interference(), {0, 1, 2, 3, 4, 5, 6, 7});
  const double shared = gemm_beside_all_reduce(spec, fixed, {0, 1, 2, 3, 4, 5, 6, 7});
  EXPECT_NEAR(shared, alone / 0.8, alone * 1e-6);
}

TEST(CollectiveAlgorithms, InterferenceTakesTheLargerOfTheKernelsSmsAndItsHbmTraffic) {
  const core::Calibration cal;  // 24 SMs, 3 HBM bytes per link byte
  // One A100 node: NVLink at 300 GB/s x 0.78 moves 3 x 234 GB/s through HBM, 0.453 of 2039 GB/s x 0.759; the SMs are
  // 24 / 108 = 0.222. The HBM share is the larger.
  const auto a100 = cluster(1);
  const double nvlink = 300e9 * cal.nvlink_efficiency, hbm = 2039e9 * cal.hbm_efficiency;
  EXPECT_NEAR(sim::communication_share(a100, cal, {0, 1, 2, 3}, 0), 3 * nvlink / hbm, 1e-9);
  // A group with one GPU per node moves its bytes through the NIC (200 Gb/s x 0.96, one NIC per GPU): 3 x 24 GB/s
  // is 0.044 of HBM, so the 24 SMs set the share.
  const auto two_nodes = cluster(2);
  EXPECT_NEAR(sim::communication_share(two_nodes, cal, {0, 8}, 0), 24.0 / 108, 1e-9);
  // Both paths at once: NVLink and the NIC add up (at 2 HBM bytes per link byte, under the cap of one half).
  auto lighter = cal;
  lighter.comm_hbm_traffic = 2;
  EXPECT_NEAR(sim::communication_share(two_nodes, lighter, {0, 1, 8, 9}, 0),
              2 * (nvlink + 25e9 * cal.nic_efficiency) / hbm, 1e-9);
  // A fixed share overrides; the toggle off gives none; CPU ranks never (their polling is on the cores).
  core::Calibration fixed;
  fixed.comm_sm_share = 0.1;
  EXPECT_EQ(sim::communication_share(a100, fixed, {0, 1}, 0), 0.1);
  EXPECT_EQ(sim::communication_share(a100, without_interference(), {0, 1}, 0), 0);
  auto cpu = a100;
  cpu.node.compute_slots = 2;
  EXPECT_EQ(sim::communication_share(cpu, cal, {0, 1}, 0), 0);
  // Never more than half.
  core::Calibration heavy;
  heavy.comm_hbm_traffic = 10;
  EXPECT_EQ(sim::communication_share(a100, heavy, {0, 1}, 0), 0.5);
}

TEST(CollectiveAlgorithms, TheDerivedShareSlowsAGemmBesideAnAllReduce) {
  // End to end: the GEMM beside an NVLink all-reduce takes 1 / (1 - share) of its time alone; beside an all-reduce
  // of GPUs on other nodes (the NIC's traffic), 1 / (1 - 24/108).
  const auto spec = cluster(2);
  const core::Calibration cal;
  const double alone = gemm_beside_all_reduce(spec, without_interference(), {0, 1});
  const double nvlink = gemm_beside_all_reduce(spec, cal, {0, 1});
  const double network = gemm_beside_all_reduce(spec, cal, {0, 8});
  EXPECT_NEAR(nvlink, alone / (1 - sim::communication_share(spec, cal, {0, 1}, 0)), alone * 1e-6);
  EXPECT_NEAR(network, alone / (1 - 24.0 / 108), alone * 1e-6);
}

TEST(CollectiveAlgorithms, NvlsServesOnlyGroupsWithTheSameGpusOnEveryNode) {
  const auto spec = cluster(4, "h100");
  EXPECT_TRUE(sim::nvls_applies(spec, {0, 1, 8, 9, 16, 17, 24, 25}));
  EXPECT_FALSE(sim::nvls_applies(spec, {0, 1, 8, 16, 17, 24, 25}));  // one GPU on node 1
  EXPECT_FALSE(sim::nvls_applies(spec, {0, 8, 16, 24}));              // one GPU per node: nothing to reduce in a switch
  EXPECT_FALSE(sim::nvls_applies(spec, {0, 1, 8, 10}));               // different GPUs on each node
  sim::CollectiveCall call;
  call.members = {0, 1, 8, 16, 17, 24, 25};
  call.bytes = 1 << 30;
  EXPECT_THROW(sim::plan_collective(spec, core::Calibration{}, call, core::CollectiveAlgo::nvls_tree),
               std::invalid_argument);
  // The automatic choice plans a ring or a tree instead: every member's port carries its bytes.
  const auto plan = sim::plan_collective(spec, core::Calibration{}, call, core::CollectiveAlgo::automatic);
  ASSERT_FALSE(plan.empty());
  for (const auto& stage : plan)
    stage.for_each_transfer(
        [](const sim::Transfer& t) { EXPECT_NE(t.bandwidth_fraction, core::Calibration{}.nvls_efficiency); });
}

TEST(CollectiveAlgorithms, TreeDepthIsThatOfABinaryHeapOfNodes) {
  // Nodes 1 and 2 hang off node 0: depth 1 for three nodes, 2 for four.
  sim::CollectiveCall call;
  call.bytes = 1024;
  for (int g = 0; g < 24; ++g) call.members.push_back(g);
  const auto three = sim::plan_tree(cluster(3), core::Calibration{}, call, sim::Protocol::ll);
  EXPECT_EQ(three.at(0).net_latency_steps, 2);
  for (int g = 24; g < 32; ++g) call.members.push_back(g);
  const auto four = sim::plan_tree(cluster(4), core::Calibration{}, call, sim::Protocol::ll);
  EXPECT_EQ(four.at(0).net_latency_steps, 4);
  EXPECT_EQ(four.at(0).latency_steps, 14);
}

TEST(CollectiveAlgorithms, TheChoiceRatesATreeAsNcclsTunerDoes) {
  // Two nodes of eight, 1 GiB: a tree sends each byte across the network once per direction, a ring 2(n-1)/n times
  // (the NICs bind the ring; both move as many bytes over NVLink), so with trees as fast as rings the tree plan is
  // faster. NCCL's tuner rates the tree's bandwidth term as the ring's x n / (0.9 (n - 1)) and keeps the ring; so
  // does the automatic choice.
  const auto spec = cluster(2);
  core::Calibration cal;
  cal.tree_efficiency = 1;
  cal.tree_half_bandwidth_bytes = 0;
  sim::CollectiveCall call;
  call.bytes = 1 << 30;
  for (int g = 0; g < 16; ++g) call.members.push_back(g);
  const double ring = sim::predict_plan_time(spec, cal, sim::plan_ring(spec, call, sim::Protocol::simple));
  const double tree = sim::predict_plan_time(spec, cal, sim::plan_tree(spec, cal, call, sim::Protocol::simple));
  EXPECT_LT(tree, 0.95 * ring);
  const auto chosen = sim::plan_collective(spec, cal, call, core::CollectiveAlgo::automatic);
  EXPECT_DOUBLE_EQ(sim::predict_plan_time(spec, cal, chosen), ring);
  // Asked for, the tree runs at its own rate.
  EXPECT_DOUBLE_EQ(sim::predict_plan_time(spec, cal, sim::plan_collective(spec, cal, call, core::CollectiveAlgo::tree)),
                   tree);
  // At 8 bytes on four nodes the tree's latency still wins (TreeLatencyGrowsWithChainAndDepthNotRanks).
}

TEST(CollectiveAlgorithms, AnEfaNetworkMovesDataAtItsOwnEfficiency) {
  // Two nodes, one GPU each, over EFA: a 1 GiB ring all-reduce is 2 steps of 512 MiB through the NIC.
  core::ClusterGeneratorOptions o;
  o.nodes = 2;
  o.gpus_per_node = 1;
  o.nics_per_node = 1;
  auto spec = core::generate_cluster(o);
  spec.node.nics.transport = core::NicTransport::efa;
  core::Calibration cal;
  cal.efa_efficiency = 0.5;
  cal.nic_efficiency = 1;
  const double bytes = 1 << 30;
  const double t = time_of(spec, cal, sim::CollectiveOp::all_reduce, bytes, core::CollectiveAlgo::ring);
  const core::Calibration efa = core::for_network(cal, true);
  const double chunk = bytes / 2, nic = spec.node.nics.bytes_per_s * 0.5;
  const double expected =
      efa.collective_latency_s + 2 * (efa.step_latency_s + efa.net_step_latency_s) + 2 * chunk / efa.message_rate(nic, chunk, true);
  EXPECT_NEAR(t, expected, expected * 2e-3);
}

TEST(CollectiveAlgorithms, TwoTreesSplitEachChannelSoNoNicCarriesThreeShares) {
  // Eight nodes: one binary tree makes a node with a parent and two children send 3 shares of a channel over its NIC
  // in each direction. NCCL's double binary tree sends half the share down each tree, and a node inner in one is a
  // leaf of the other, so no NIC sends more than 2 shares.
  const auto spec = cluster(8);
  sim::CollectiveCall call;
  call.bytes = 1 << 30;
  for (int g = 0; g < 64; ++g) call.members.push_back(g);
  core::Calibration cal;
  cal.tree_half_bandwidth_bytes = 0;
  const auto plan = sim::plan_tree(spec, cal, call, sim::Protocol::simple);
  const double share = call.bytes / 8;  // 8 channels, one per NIC
  std::map<int, double> sent;          // GPU -> bytes it sends over the network
  double total = 0;
  for (const auto& t : plan.at(0).transfers)
    if (spec.node_of(t.src_gpu) != spec.node_of(t.dst_gpu)) sent[t.src_gpu] += t.bytes, total += t.bytes;
  EXPECT_DOUBLE_EQ(total, 8 * 2 * 2 * 7 * share / 2);  // channels x trees x directions x edges x half a share
  for (const auto& [gpu, bytes] : sent) EXPECT_LE(bytes, 2 * share) << "GPU " << gpu;
}

TEST(CollectiveAlgorithms, ATreeRampsOnTheCallsSize) {
  // Two nodes of one GPU: each direction of the NIC carries the whole buffer (half down each tree) at
  // tree_efficiency x 1 / (1 + sqrt(tree_half_bandwidth_bytes / bytes)) of its rate.
  core::ClusterGeneratorOptions o;
  o.nodes = 2;
  o.gpus_per_node = 1;
  o.nics_per_node = 1;
  const auto spec = core::generate_cluster(o);
  core::Calibration cal;
  cal.tree_efficiency = 0.9;
  cal.tree_half_bandwidth_bytes = 4e6;
  sim::CollectiveCall call;
  call.members = {0, 1};
  for (double bytes : {1e6, 16e6}) {
    call.bytes = bytes;
    const auto plan = sim::plan_tree(spec, cal, call, sim::Protocol::simple);
    const double moving = sim::predict_plan_time(spec, cal, plan) - plan.at(0).latency_s(cal);
    const double rate = spec.node.nics.bytes_per_s * cal.nic_efficiency * 0.9 / (1 + std::sqrt(4e6 / bytes));
    EXPECT_NEAR(moving, bytes / rate, bytes / rate * 1e-9) << bytes;
  }
}
