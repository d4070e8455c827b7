// Training steps on the simulated cluster: the MoESys policies against the DeepSpeed baseline, the hierarchical
// all-to-all against the flat one, elastic against static multi-task placement, simulated memory against the
// plan, offload and the LFU cache, and determinism. Each comparison runs its simulations in child processes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "core/units.hpp"
#include "fork_run.hpp"
#include "sim/training_simulator.hpp"

using namespace moesys;
using namespace moesys::policies::training;
using nlohmann::json;

namespace {

json paper(int experts, int gpus, const json& policy) {
  return {{"model", {{"preset", "gpt-moe"}, {"experts", experts}}},
          {"cluster", {{"gpus", gpus}}},
          {"policy", policy},
          {"steps", 2}};
}

json run(const json& config) {
  return run_training(parse_training_config(config, "test.json"), sim_simulator()).summary;
}

/// Runs in a child (one SimGrid engine per process) and returns the named numbers of the summary.
std::vector<double> numbers(const json& config, const std::vector<std::string>& pointers) {
  return test::run_in_child([&] {
    json s = run(config);
    std::vector<double> out;
    for (const auto& p : pointers) out.push_back(s.at(json::json_pointer(p)).get<double>());
    return out;
  });
}

double tokens_per_s(const json& config) {
  return numbers(config, {"/tokens_per_s"}).at(0);
}

const json kMultitask = {{"kind", "multitask"},
                         {"tasks",
                          {{{"name", "a"}, {"sequences", 64}, {"affinity", 0.5}},
                           {{"name", "b"}, {"sequences", 32}, {"affinity", 0.5}},
                           {{"name", "c"}, {"sequences", 16}, {"affinity", 0.5}},
                           {{"name", "d"}, {"sequences", 16}, {"affinity", 0.5}}}}};

}  // namespace

TEST(Training, MoesysPresetIsFasterThanDeepSpeedOnThePaperModel) {
  const double ds = tokens_per_s(paper(64, 64, {{"preset", "deepspeed"}}));
  const double ms = tokens_per_s(paper(64, 64, {{"preset", "moesys"}}));
  EXPECT_GT(ms, ds * 1.1) << "deepspeed " << ds << " tokens/s, moesys " << ms;
}

TEST(Training, HierarchicalAllToAllBeatsFlatBeyondOneNode) {
  // Same everything but the all-to-all, one sequence per GPU: on 16 nodes the flat all-to-all's per-peer messages
  // are small (160 KB) and the two-step algorithm sends 8x fewer, 8x larger messages between nodes. Neither crosses
  // the spine (the flat one's messages between rails take NCCL's PXN). Inside one node both are the same NVLink
  // exchange. (On 2 nodes the serial NVLink step
  // costs about what it saves; experiments/training-hierarchical-a2a.json shows the crossover.)
  auto config = [](int gpus, const char* a2a) {
    json c = paper(gpus, gpus, {{"preset", "deepspeed"}, {"all_to_all", a2a}});
    c["model"]["micro_batch"] = 1;
    c["model"]["global_batch"] = gpus;
    return c;
  };
  const std::vector<std::string> what = {"/tokens_per_s", "/network_gb_per_step/cross_spine"};
  const auto flat = numbers(config(128, "flat"), what);
  const auto hier = numbers(config(128, "hierarchical"), what);
  EXPECT_GT(hier[0], flat[0] * 1.03);
  EXPECT_EQ(flat[1], 0);
  EXPECT_EQ(hier[1], 0);
  const double one_flat = tokens_per_s(config(8, "flat"));
  const double one_hier = tokens_per_s(config(8, "hierarchical"));
  EXPECT_NEAR(one_hier / one_flat, 1.0, 0.01);
}

TEST(Training, OverlapHidesPartOfTheAllToAll) {
  const std::vector<std::string> what = {"/breakdown_s/exposed_comm", "/tokens_per_s"};
  const auto plain = numbers(paper(16, 16, {{"preset", "moesys"}, {"overlap_chunks", 1}}), what);
  const auto chunked = numbers(paper(16, 16, {{"preset", "moesys"}, {"overlap_chunks", 4}}), what);
  EXPECT_LT(chunked[0], plain[0]);
  EXPECT_GT(chunked[1], plain[1]);
}

TEST(Training, ElasticPlacementFollowsLoadAndBeatsStatic) {
  json base = {{"model", {{"preset", "gpt-moe"}, {"experts", 8}, {"micro_batch", 4}}},
               {"cluster", {{"gpus", 8}}},
               {"workload", kMultitask},
               {"steps", 1}};
  json stat = base, elastic = base, moesys = base;
  stat["policy"] = {{"preset", "static-multitask"}};
  elastic["policy"] = {{"preset", "static-multitask"}, {"placement", "elastic"}};
  moesys["policy"] = {{"preset", "moesys"}};
  const std::vector<std::string> what = {"/tokens_per_s", "/memory/peak_hbm_gib"};
  const auto s = numbers(stat, what), e = numbers(elastic, what), m = numbers(moesys, what);
  EXPECT_GT(e[0], s[0] * 1.2);  // placement alone: no GPU waits for the heaviest task's ranks
  EXPECT_GT(m[0], e[0]);
  EXPECT_LT(m[1], s[1]);  // the whole preset also shards what plain data parallelism replicates
  const double placed =
      test::run_in_child([&] { return std::vector<double>{run(elastic)["placement"] == "4/2/1/1" ? 1.0 : 0.0}; }).at(0);
  EXPECT_EQ(placed, 1.0) << "elastic placement of 64/32/16/16 sequences on 8 GPUs should be 4/2/1/1";
}

TEST(Training, SimulatedPeakMemoryIsThePlannedPeak) {
  const json config = paper(16, 16, {{"preset", "moesys"}, {"offload", "nvme"}});
  const TrainingPlan plan = make_training_plan(parse_training_config(config, "test.json"));
  std::uint64_t planned_hbm = 0, planned_dram = 0;
  for (const RankMemory& r : plan.memory.ranks) {
    planned_hbm = std::max(planned_hbm, r.peak(core::Tier::hbm));
    planned_dram = std::max(planned_dram, r.peak(core::Tier::dram));
  }
  const auto sim = numbers(config, {"/memory/peak_hbm_gib", "/memory/peak_dram_gib"});
  EXPECT_DOUBLE_EQ(sim[0], static_cast<double>(planned_hbm) / core::kGiB);
  EXPECT_DOUBLE_EQ(sim[1], static_cast<double>(planned_dram) / core::kGiB);
}

TEST(Training, LfuCacheServesTheSecondStepFromHostMemory) {
  json config = paper(16, 16, {{"preset", "moesys"}, {"offload", "nvme"}});
  config["steps"] = 3;
  const auto cached =
      numbers(config, {"/offload/cache_hits", "/offload/cache_misses", "/offload/ssd_read_gb", "/tokens_per_s"});
  config["policy"] = {{"preset", "moesys"}, {"offload", "nvme"}, {"prefetch", "all-experts"}};
  const auto blind = numbers(config, {"/offload/ssd_read_gb", "/tokens_per_s"});
  EXPECT_EQ(cached[1], 16 * 12);      // one cold miss per expert (16 ranks x 12 layers x 1 expert)
  EXPECT_EQ(cached[0], 2 * 16 * 12);  // then hits in steps 2 and 3
  EXPECT_LT(cached[2], blind[0] / 2);
  EXPECT_GT(cached[3], blind[1]);
}

TEST(Training, SameSeedSameNumbers) {
  json config = paper(16, 16, {{"preset", "moesys"}});
  config["workload"] = {{"kind", "zipf"}, {"exponent", 1.2}, {"seed", 7}};
  const std::vector<std::string> what = {"/step_s",
                                         "/tokens_per_s",
                                         "/breakdown_s/compute",
                                         "/breakdown_s/idle",
                                         "/memory/peak_hbm_gib",
                                         "/gate/dropped_fraction",
                                         "/network_gb_per_step/same_leaf"};
  const auto first = numbers(config, what);
  EXPECT_EQ(first, numbers(config, what));
  config["workload"]["seed"] = 8;
  EXPECT_NE(first, numbers(config, what));
}

namespace {
// A Qwen3-like MoE of 8 layers on 32 H100s (4 nodes) in pipeline stages of 8 ranks, one sequence per micro-batch.
json pipelined(const json& parallel, int sequences) {
  return {{"model", {{"preset", "qwen3-30b-a3b"}, {"layers", 8}, {"seq_len", 1024}, {"micro_batch", 1},
                     {"global_batch", sequences}}},
          {"cluster", {{"gpus", 32}, {"gpu", "h100"}}},
          {"parallel", parallel},
          {"policy", {{"preset", "megatron"}}},
          {"steps", 1}};
}
}  // namespace

TEST(Training, PipelineBubbleShrinksWithMicroBatchesAndVirtualStages) {
  // 4 stages, per-micro-batch time t: in 1F1B a step of M micro-batches takes about (M + P - 1) t (the bubble is
  // P - 1 slots), so 16 micro-batches take about 19/7 of the time of 4, not 4x; with V model chunks per stage the
  // bubble shrinks, ideally V-fold, (M + (P - 1) / V) t. Here the last stage, which also computes the 152k-word
  // output layer, sets the pace and every chunk boundary adds a message on the critical path, so two chunks save
  // about half a slot rather than one and a half. (A stage waiting in the bubble shows as exposed communication in
  // the breakdown: it waits on a posted receive.)
  const json stages = {{"pp", 4}, {"ep", 8}};
  json interleaved = stages;
  interleaved["vpp"] = 2;
  const double few = numbers(pipelined(stages, 8 * 4), {"/step_s"}).at(0);  // 4 micro-batches
  const double many = numbers(pipelined(stages, 8 * 16), {"/step_s"}).at(0);
  const double virt = numbers(pipelined(interleaved, 8 * 4), {"/step_s"}).at(0);
  EXPECT_GT(many / few, 2.4) << "4 micro-batches " << few << " s, 16 " << many << " s";
  EXPECT_LT(many / few, 3.2) << "4 micro-batches " << few << " s, 16 " << many << " s";
  EXPECT_LT(virt / few, 0.95) << "2 model chunks per stage " << virt << " s, 1 " << few << " s";
}

TEST(Training, FullRecomputeCostsAForwardPerLayerAndSavesActivations) {
  const json keep = {{"pp", 2}, {"ep", 8}};
  json recompute = keep;
  recompute["recompute"] = "full";
  const auto kept = numbers(pipelined(keep, 16 * 4), {"/breakdown_s/compute", "/memory/peak_hbm_gib"});
  const auto again = numbers(pipelined(recompute, 16 * 4), {"/breakdown_s/compute", "/memory/peak_hbm_gib"});
  // Forward is about a third of forward + backward: recomputing it adds about that much compute time.
  EXPECT_GT(again[0], kept[0] * 1.15);
  EXPECT_LT(again[0], kept[0] * 1.5);
  EXPECT_LT(again[1], kept[1]);
}

TEST(Training, TensorParallelShardsActivationsAndMovesThemOverNvlink) {
  // Tensor parallelism 2 on nodes of 8: each rank holds half of every micro-batch's tokens and of the attention
  // weights (lower peak HBM), and every layer all-gathers and reduce-scatters activations inside the node (more
  // intra-node traffic). The data-parallel replicas halve, so each runs twice the micro-batches.
  const std::vector<std::string> keys = {"/memory/planned_by_use_gib/hbm/activations",
                                         "/network_gb_per_step/intra_node", "/micro_batches",
                                         "/memory/planned_by_use_gib/hbm/parameters"};
  const auto one = numbers(pipelined({{"ep", 8}}, 16 * 4), keys);
  const auto two = numbers(pipelined({{"ep", 8}, {"tp", 2}}, 16 * 4), keys);
  EXPECT_NEAR(two[0] / one[0], 0.5, 0.05);
  EXPECT_LT(two[3], one[3]);
  EXPECT_GT(two[1], one[1]);
  EXPECT_EQ(two[2], 2 * one[2]);
}

TEST(Training, AllGatherDispatcherSendsEveryTokenToEveryMember) {
  // One node of 8 GPUs, 8 experts, top-2, dropless on an even load. The all-to-all dispatcher sends each token's k
  // rows to the experts' owners (7/8 of them leave the rank), four times a layer (dispatch and combine, forward and
  // backward); the all-gather one sends every token to every other member as often (gather and reduce-scatter,
  // forward and backward), plus the slots and weights. The difference in NVLink bytes per step is that arithmetic
  // (within 1%).
  auto config = [](const char* dispatcher) {
    return paper(8, 8, {{"preset", "deepspeed"}, {"gate", "dropless"}, {"dispatch", "counts"}, {"dispatcher", dispatcher}});
  };
  const std::vector<std::string> keys = {"/network_gb_per_step/intra_node", "/tokens_per_step", "/model/hidden",
                                         "/model/top_k", "/model/layers"};
  const auto a2a = numbers(config("all_to_all"), keys), gathered = numbers(config("all_gather"), keys);
  const double P = 8, bytes = 2 /* fp16 */, tokens = a2a[1], h = a2a[2], k = a2a[3], layers = a2a[4];
  const double per_token_layer = 4 * h * bytes;  // one token's row, four times a layer
  const double all_gather_gb = tokens * layers * (P - 1) * per_token_layer / 1e9;
  const double all_to_all_gb = tokens * layers * k * (P - 1) / P * per_token_layer / 1e9;
  EXPECT_NEAR(gathered[0] - a2a[0], all_gather_gb - all_to_all_gb, 0.01 * (all_gather_gb - all_to_all_gb));
}

TEST(Training, DeepEpDispatcherSendsEachTokenOncePerNode) {
  // Two nodes of 8 GPUs, 16 experts, top-8, dropless on an even load. The all-to-all dispatcher sends each token's
  // 8 rows to their experts' ranks, half of them on the other node, four exchanges a layer (dispatch and combine,
  // forward and backward); the DeepEP dispatcher sends the token once to the other node (which takes at least one
  // of its 8 distinct experts unless all 8 are on this node: 1 - 1 / C(16, 8)) along its rail and forwards it inside.
  // The bytes between nodes
  // drop by that arithmetic (within 1%; the dense gradients' traffic is the same in both), no row crosses the spine
  // in either (the all-to-all's rows between rails take PXN), NVLink carries DeepEP's forwarding (as many bytes as
  // PXN's NVLink legs: in expectation a row goes to another local GPU than the rail's 7 times in 8 either way), and
  // the step is faster.
  auto config = [](const char* dispatcher) {
    json c = paper(16, 16, {{"preset", "deepspeed"}, {"gate", "dropless"}, {"dispatch", "counts"},
                            {"dispatcher", dispatcher}});
    c["model"]["top_k"] = 8;
    c["model"]["micro_batch"] = 2;
    return c;
  };
  const std::vector<std::string> keys = {"/network_gb_per_step/same_leaf", "/network_gb_per_step/cross_spine",
                                         "/network_gb_per_step/intra_node", "/tokens_per_s", "/tokens_per_step",
                                         "/model/hidden", "/model/layers"};
  const auto a2a = numbers(config("all_to_all"), keys), deepep = numbers(config("deepep"), keys);
  const double tokens = a2a[4], h = a2a[5], layers = a2a[6], k = 8, bytes = 2 /* fp16 */;
  const double moe_gb = tokens * layers * k * 0.5 * 4 * h * bytes / 1e9;  // the all-to-all dispatcher's, between nodes
  const double kept = (1 - 1.0 / 12870) / (k * 0.5);                      // DeepEP's share of them
  const double saved = (a2a[0] + a2a[1]) - (deepep[0] + deepep[1]);
  EXPECT_NEAR(saved, moe_gb * (1 - kept), 0.01 * moe_gb * (1 - kept));
  EXPECT_LT(deepep[1], 1e-4 * moe_gb);  // only the exchange of token counts crosses the spine
  EXPECT_LT(a2a[1], 1e-4 * moe_gb);
  EXPECT_NEAR(deepep[2], a2a[2], 0.01 * a2a[2]);
  EXPECT_GT(deepep[3], a2a[3]);
}

TEST(Training, ContextParallelShardsActivationsAndGathersKeysOverNvlink) {
  // Context parallelism 2 on nodes of 8: each rank holds half of every sequence (half the activations of attention
  // and the dense parts), and every layer all-gathers keys and values and reduce-scatters their gradients inside the
  // node. The replicas halve, so each runs twice the micro-batches. The keys of chunk 1 are twice chunk 0's, so the
  // attention kernels of the group's ranks differ, and the chunk-1 ranks set the pace.
  const std::vector<std::string> keys = {"/memory/planned_by_use_gib/hbm/activations",
                                         "/network_gb_per_step/intra_node", "/micro_batches"};
  const auto one = numbers(pipelined({{"ep", 8}}, 32 * 2), keys);
  const auto two = numbers(pipelined({{"ep", 8}, {"cp", 2}}, 32 * 2), keys);
  EXPECT_LT(two[0], 0.6 * one[0]);
  EXPECT_GT(two[1], one[1]);
  EXPECT_EQ(two[2], 2 * one[2]);
}

TEST(Training, ContextParallelZigzagGivesEveryMemberTheSameAttentionWork) {
  // Zigzag blocks: member c of 4 holds blocks c and 7 - c of 8, whose causal queries see c + 1 and 8 - c blocks of
  // keys, 9 in all for every member (contiguous chunks gave the last member 7 times the first's work). The two
  // halves of one member are different kernels; the members' sums agree.
  const std::vector<double> flop = test::run_in_child([] {
    const TrainingReport r =
        run_training(parse_training_config(pipelined({{"ep", 8}, {"cp", 4}}, 32), "test.json"),
                     sim_simulator(core::default_calibration_for("h100"), true), true);  // every kernel's span
    std::vector<double> per_rank(4, 0.0);
    std::vector<double> rank0;
    for (const core::Span& s : r.last_step)
      if (s.name == "attention" && s.rank < 4) {
        per_rank[static_cast<std::size_t>(s.rank)] += s.flop;
        if (s.rank == 0) rank0.push_back(s.flop);
      }
    rank0.resize(2, 0.0);
    per_rank.insert(per_rank.end(), rank0.begin(), rank0.end());
    return per_rank;
  });
  ASSERT_EQ(flop.size(), 6u);
  EXPECT_GT(flop[0], 0.0);
  for (int c = 1; c < 4; ++c) EXPECT_NEAR(flop[c], flop[0], 1e-9 * flop[0]) << "member " << c;
  // Rank 0's halves: block 0 over one block of keys, block 7 over eight (a triangle, then seven squares and one).
  EXPECT_NEAR(flop[5] / flop[4], 15.0, 1e-9);
}

TEST(Training, Fp8GemmsQuantizeTheirActivationOperandFirst) {
  // Transformer Engine's FP8 path: a forward or data-gradient GEMM in FP8 reads its activation operand quantized by
  // a memory-bound kernel just before it (which also writes the transposed copy the weight-gradient GEMM reads, so
  // that one quantizes nothing); a GEMM reading the operand the GEMM before it quantized (MLA's key and value
  // projections, one GEMM in Megatron) and the experts' first GEMM on rows that arrived in FP8 (fp8_dispatch: the
  // tokens are quantized once before the dispatch) quantize nothing; the router and the output layer keep the
  // model's dtype; without FP8 nothing is quantized. Rank 0's compute kernels in order, as classes.
  constexpr double kOther = 0, kQuantize = 1, kWgrad = 2, kModelDtype = 3, kQuantizesFirst = 4, kReadsQuantized = 5;
  auto kernels = [=](bool fp8) {
    return test::run_in_child([=] {
      json c = {{"model", {{"preset", "deepseek-v3"}, {"layers", 4}, {"experts", 16}, {"seq_len", 256},
                           {"global_batch", 8}, {"micro_batch", 1}, {"fp8_gemm", fp8}, {"fp8_dispatch", fp8}}},
                {"cluster", {{"gpus", 8}, {"gpu", "h100"}}},
                {"policy", {{"preset", "megatron"}}},
                {"steps", 1}};
      const TrainingReport r = run_training(parse_training_config(c, "test.json"),
                                            sim_simulator(core::default_calibration_for("h100"), true), true);
      std::vector<double> out;
      for (const core::Span& s : r.last_step) {
        if (s.rank != 0 || s.stream != "compute") continue;
        const std::string& n = s.name;
        out.push_back(n == "fp8 quantize"                                                      ? kQuantize
                      : n.find("wgrad") != std::string::npos                                  ? kWgrad
                      : n == "logits" || n == "gate logits" || n == "mtp logits"              ? kModelDtype
                      : n == "attention out" || n == "kv down" || n == "k up" || n == "q up"   ? kQuantizesFirst
                      : n == "k rope" || n == "v up" || n == "expert fc1"                     ? kReadsQuantized
                                                                                              : kOther);
      }
      return out;
    });
  };
  const std::vector<double> bf16 = kernels(false);
  EXPECT_EQ(std::count(bf16.begin(), bf16.end(), kQuantize), 0);
  const std::vector<double> k = kernels(true);
  for (std::size_t i = 0; i + 1 < k.size(); ++i) {
    if (k[i + 1] == kWgrad || k[i + 1] == kModelDtype || k[i + 1] == kReadsQuantized) {
      EXPECT_NE(k[i], kQuantize) << "kernel " << i + 1 << " (class " << k[i + 1] << ")";
    }
    if (k[i + 1] == kQuantizesFirst) {
      EXPECT_EQ(k[i], kQuantize) << "kernel " << i + 1;
    }
  }
  EXPECT_GT(std::count(k.begin(), k.end(), kQuantize), 20);
  EXPECT_GT(std::count(k.begin(), k.end(), kQuantizesFirst), 5);
  EXPECT_GT(std::count(k.begin(), k.end(), kReadsQuantized), 5);
}

TEST(Training, SelectiveRecomputeCostsLessComputeThanFullAndKeepsMoreThanIt) {
  // Selective recompute runs a few cheap kernels again (norms, activations) instead of whole forwards: more compute
  // than keeping everything, much less than full recompute; its peak lies between the two.
  const json keep = {{"pp", 2}, {"ep", 8}};
  json selective = keep, full = keep;
  selective["recompute"] = "selective";
  full["recompute"] = "full";
  const std::vector<std::string> keys = {"/breakdown_s/compute", "/memory/peak_hbm_gib"};
  const auto kept = numbers(pipelined(keep, 16 * 4), keys), some = numbers(pipelined(selective, 16 * 4), keys);
  const auto all = numbers(pipelined(full, 16 * 4), keys);
  EXPECT_GT(some[0], kept[0]);
  EXPECT_LT(some[0] - kept[0], 0.25 * (all[0] - kept[0]));
  EXPECT_LT(some[1], kept[1]);
  EXPECT_GT(some[1], all[1]);
}

// Expert replicas on a Zipf-skewed, dropless workload (16 experts on 16 GPUs): EPLB's copies take rows off the
// busiest rank from the second step and shorten the step; on an even load they only cost their refresh (the
// copies' gradients to the owners and the weights back), which shows as more bytes on the network.
TEST(Training, ExpertReplicasSpreadASkewedLoadAndChargeTheirTraffic) {
  auto config = [](const json& workload, const json& replicas) {
    json c = paper(16, 16, {{"preset", "deepspeed"}, {"gate", "dropless"}, {"dispatch", "counts"}, {"replicas", replicas}});
    c["model"]["global_batch"] = 128;
    c["workload"] = workload;
    c["steps"] = 3;
    return c;
  };
  const json zipf = {{"kind", "zipf"}, {"exponent", 1.0}}, uniform = {{"kind", "uniform"}};
  const json none = {{"kind", "none"}}, eplb = {{"kind", "eplb"}, {"slots", 1}};
  const std::vector<std::string> keys = {"/tokens_per_s", "/gate/rank_imbalance", "/network_gb_per_step/intra_node"};
  const auto skew_none = numbers(config(zipf, none), keys), skew_eplb = numbers(config(zipf, eplb), keys);
  EXPECT_GT(skew_none[1], 3.0) << "the workload is skewed";
  EXPECT_LT(skew_eplb[1], 0.7 * skew_none[1]);
  EXPECT_GT(skew_eplb[0], 1.5 * skew_none[0]);
  const auto even_none = numbers(config(uniform, none), keys), even_eplb = numbers(config(uniform, eplb), keys);
  EXPECT_NEAR(even_eplb[1], 1.0, 0.01);
  EXPECT_GT(even_eplb[2], even_none[2] * 1.1);
  EXPECT_LT(even_eplb[0], even_none[0]);

  // EPLB's hierarchical form (2 nodes of 8): copies stay on their owner's node, so tokens cross nodes exactly as
  // without copies and every refresh stays on NVLink; the global form sends tokens and refreshes across nodes.
  const json node = {{"kind", "eplb"}, {"slots", 1}, {"scope", "node"}};
  const std::vector<std::string> paths = {"/gate/rank_imbalance", "/network_gb_per_step/intra_node",
                                          "/network_gb_per_step/same_leaf"};
  const auto n_none = numbers(config(zipf, none), paths), n_node = numbers(config(zipf, node), paths),
             n_global = numbers(config(zipf, eplb), paths);
  EXPECT_LT(n_node[0], 0.8 * n_none[0]);
  EXPECT_GT(n_node[0], n_global[0]) << "a node's copies cannot take the other node's load";
  EXPECT_GT(n_node[1], n_none[1]);
  EXPECT_NEAR(n_node[2], n_none[2], 0.01 * n_none[2]);
  EXPECT_GT(n_global[2], 1.02 * n_none[2]);
}
