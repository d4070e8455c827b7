// Offloaded MoE generation on the simulated cluster: the ring against layer offload and the all-in-GPU bound,
// memory against K, bytes moved against hand counts, decode steps against the PCIe bound, pageable staging,
// shared PCIe uplinks, expert parallelism and determinism. Each simulation runs in its own child process.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "core/units.hpp"
#include "fork_run.hpp"
#include "policies/inference/metrics.hpp"
#include "sim/simulation.hpp"

namespace moesys::policies::inference {
namespace {

core::ClusterSpec cluster(int nodes, int gpus_per_node) {
  core::ClusterGeneratorOptions o;
  o.nodes = nodes;
  o.gpus_per_node = gpus_per_node;
  o.nics_per_node = gpus_per_node;
  o.gpu = "a100-40g";
  return core::generate_cluster(o);
}

double link_bytes_per_s(const core::ClusterSpec& spec) {
  return spec.node.pcie.bytes_per_s() * core::default_calibration().pcie_efficiency;
}

// 12 layers of 8 experts with hidden 2048: a 537 MB layer of experts copies in ~21 ms, about what a prefill of
// 32 x 1024 tokens computes per layer, so copies can hide behind compute.
core::ModelConfig small_moe() {
  core::ModelConfig m = core::ModelConfig::paper_gpt_moe(8);
  m.name = "small-moe";
  m.hidden = 2048;
  m.heads = 16;
  m.seq_len = 2048;
  return m;
}

InferenceConfig make(const core::ModelConfig& model, const std::string& policy, int slots, HostMemory host, int batch,
                     int prompt, int output) {
  InferenceConfig c;
  c.model = model;
  c.policy = policy;
  c.preset = policy;
  c.ring_slots = slots;
  c.host_memory = host;
  c.batch = batch;
  c.prompt_tokens = prompt;
  c.output_tokens = output;
  return c;
}

enum Field { kTokensPerS, kTtft, kTpot, kPeakHbm, kH2dBytes, kBoundFraction, kDecodeTokensPerS, kElapsed };

// Simulates one run on every GPU of `spec` in a child process and returns its metrics (indexed by Field).
std::vector<double> simulate(InferenceConfig c, const core::ClusterSpec& spec) {
  return test::run_in_child([c, spec]() mutable {
    c.gpus = spec.total_gpus();  // every GPU of the cluster serves
    const PreparedRun run = prepare_run(c, spec, flag_namer());
    std::vector<RankRecord> records(static_cast<std::size_t>(c.gpus));
    const sim::SimResult r = sim::simulate(spec, c.gpus, generation_program(run, records));
    RuntimeOutcome outcome;
    for (const auto& rank : r.ranks) outcome.peak_hbm_bytes.push_back(rank.memory.peak_bytes(core::Tier::hbm));
    const InferenceMetrics m = summarize(run, records, outcome, link_bytes_per_s(spec));
    return std::vector<double>{m.tokens_per_s,           m.ttft_s,
                               m.tpot_p50_s.value_or(0), static_cast<double>(m.peak_hbm_bytes),
                               m.h2d_bytes_per_rank,     m.pcie_bound_fraction.value_or(0),
                               m.decode_tokens_per_s,    m.elapsed_s};
  });
}

TEST(InferenceSim, RingWithTwoOrMoreSlotsBeatsLayerOffloadWhenCopiesOverlapCompute) {
  const auto spec = cluster(1, 1);
  const auto m = small_moe();
  auto ring = [&](int k) { return simulate(make(m, "moesys", k, HostMemory::pinned, 32, 1024, 4), spec); };
  const auto k1 = ring(1), k2 = ring(2), k4 = ring(4);
  const auto ds_pinned = simulate(make(m, "deepspeed", 0, HostMemory::pinned, 32, 1024, 4), spec);
  const auto ds_pageable = simulate(make(m, "deepspeed", 0, HostMemory::pageable, 32, 1024, 4), spec);
  // With one slot every copy waits for the previous layer to finish; two slots hide copies behind the prefill.
  EXPECT_LT(k2[kTtft], 0.8 * k1[kTtft]);
  for (const auto& k : {k2, k4}) {
    EXPECT_GT(k[kTokensPerS], ds_pinned[kTokensPerS]);
    EXPECT_GT(k[kTokensPerS], ds_pageable[kTokensPerS]);
    EXPECT_LT(k[kTtft], ds_pinned[kTtft]);
  }
  EXPECT_GE(k4[kTokensPerS], k2[kTokensPerS]);
  // Pageable memory costs DeepSpeed a host copy per layer on top of the DMA.
  EXPECT_LT(ds_pageable[kTokensPerS], ds_pinned[kTokensPerS]);
}

TEST(InferenceSim, AllInGpuIsTheUpperBound) {
  const auto spec = cluster(1, 1);
  const auto m = small_moe();
  const auto all = simulate(make(m, "all-in-gpu", 0, HostMemory::pinned, 32, 512, 8), spec);
  EXPECT_EQ(all[kH2dBytes], 0.0);
  for (int k : {1, 2, 6, 12}) {
    const auto ring = simulate(make(m, "moesys", k, HostMemory::pinned, 32, 512, 8), spec);
    EXPECT_GT(all[kTokensPerS], ring[kTokensPerS]) << "K = " << k;
  }
  for (HostMemory h : {HostMemory::pinned, HostMemory::pageable})
    EXPECT_GT(all[kTokensPerS], simulate(make(m, "deepspeed", 0, h, 32, 512, 8), spec)[kTokensPerS]);
}

TEST(InferenceSim, PeakGpuMemoryGrowsByOneSlotPerK) {
  const auto spec = cluster(1, 1);
  InferenceConfig c = make(core::ModelConfig::paper_gpt_moe(16), "moesys", 1, HostMemory::pinned, 8, 64, 3);
  const double slot = static_cast<double>(weight_sizes(c).layer_expert_bytes);
  double previous = 0;
  for (int k = 1; k <= 4; ++k) {
    c.ring_slots = k;
    const double peak = simulate(c, spec)[kPeakHbm];
    if (k > 1) {
      EXPECT_DOUBLE_EQ(peak - previous, slot) << "K = " << k;
    }
    previous = peak;
  }
}

TEST(InferenceSim, BytesMovedMatchTheMechanisms) {
  const auto spec = cluster(1, 1);
  InferenceConfig c = make(core::ModelConfig::paper_gpt_moe(8), "moesys", 3, HostMemory::pinned, 4, 32, 5);
  const WeightSizes w = weight_sizes(c);
  // K < M: every MoE layer's experts are copied once per forward pass.
  EXPECT_DOUBLE_EQ(simulate(c, spec)[kH2dBytes], 5.0 * static_cast<double>(w.expert_bytes()));
  // K = M: the slots keep their layers; only the first pass copies.
  c.ring_slots = 12;
  EXPECT_DOUBLE_EQ(simulate(c, spec)[kH2dBytes], static_cast<double>(w.expert_bytes()));
  // DeepSpeed copies every layer, dense part included, every pass.
  c.policy = "deepspeed";
  EXPECT_DOUBLE_EQ(simulate(c, spec)[kH2dBytes],
                   5.0 * static_cast<double>(w.dense_bytes() - w.embedding_bytes + w.expert_bytes()));
}

TEST(InferenceSim, DecodeOfALargeModelRunsAtThePcieBound) {
  const auto spec = cluster(1, 1);
  InferenceConfig c = make(core::ModelConfig::paper_gpt_moe(16), "moesys", 2, HostMemory::pinned, 8, 128, 6);
  const auto r = simulate(c, spec);
  // Hand count: 12 layers x 16 experts x 134238208 parameters x 2 bytes over PCIe Gen4 x16 at its efficiency.
  const double bound_s = 12.0 * 16 * 134238208 * 2 / link_bytes_per_s(spec);
  EXPECT_GE(r[kTpot], bound_s);
  EXPECT_LT(r[kTpot], 1.01 * bound_s);
  EXPECT_GT(r[kBoundFraction], 0.99);
}

TEST(InferenceSim, PageableCopiesAddAHostCopyPerLayer) {
  const auto spec = cluster(1, 1);
  InferenceConfig c = make(core::ModelConfig::paper_gpt_moe(16), "deepspeed", 0, HostMemory::pinned, 8, 128, 4);
  const double pinned = simulate(c, spec)[kTpot];
  c.host_memory = HostMemory::pageable;
  const double pageable = simulate(c, spec)[kTpot];
  const WeightSizes w = weight_sizes(c);
  // The staging copy reads and writes host memory at the node's bandwidth, serially before each layer's DMA.
  const double staging_s = 2.0 * static_cast<double>(w.dense_bytes() - w.embedding_bytes + w.expert_bytes()) /
                           spec.node.host_memory.bytes_per_s;
  EXPECT_NEAR(pageable - pinned, staging_s, 0.01 * staging_s);
}

TEST(InferenceSim, TwoGpusBehindOneSwitchShareItsUplink) {
  // DGX A100 boards put two GPUs behind each PCIe switch: streaming experts on both halves each one's rate.
  const auto one =
      simulate(make(core::ModelConfig::paper_gpt_moe(16), "moesys", 2, HostMemory::pinned, 8, 64, 4), cluster(1, 1));
  const auto two =
      simulate(make(core::ModelConfig::paper_gpt_moe(32), "moesys", 2, HostMemory::pinned, 8, 64, 4), cluster(1, 2));
  EXPECT_GT(one[kBoundFraction], 0.95);
  EXPECT_NEAR(two[kBoundFraction], 0.5, 0.03);
}

TEST(InferenceSim, ExpertParallelServingOnTwoNodes) {
  const auto spec = cluster(2, 8);
  InferenceConfig c = make(core::ModelConfig::paper_gpt_moe(32), "all-in-gpu", 0, HostMemory::pinned, 16, 64, 4);
  c.all_to_all = core::CollectiveAlgo::direct;
  const auto flat = simulate(c, spec);
  c.all_to_all = core::CollectiveAlgo::hierarchical;
  const auto hier = simulate(c, spec);
  for (const auto& r : {flat, hier}) {
    EXPECT_GT(r[kTokensPerS], 0);
    EXPECT_EQ(r[kH2dBytes], 0);
  }
  // The same tokens cross the network either way; the algorithms differ by less than the expert compute.
  EXPECT_NEAR(hier[kTpot] / flat[kTpot], 1.0, 0.2);
  // Zipf-skewed routing loads some experts more: the step waits for the busiest rank.
  c.workload = {{"kind", "zipf"}, {"exponent", 1.2}, {"seed", 7}};
  EXPECT_GT(simulate(c, spec)[kTpot], hier[kTpot]);
}

TEST(InferenceSim, DeepEpServesThePrefillWithNormalKernelsAndDecodeWithLowLatencyOnes) {
  // all_to_all "deepep": the prefill's dispatch and combine run DeepEP's normal kernels (one copy per node along
  // the rail), every decode pass its low-latency ones (every copy straight to its expert's GPU), in that order.
  const auto spec = cluster(2, 8);
  InferenceConfig c = make(core::ModelConfig::paper_gpt_moe(32), "all-in-gpu", 0, HostMemory::pinned, 4, 64, 4);
  c.all_to_all = core::CollectiveAlgo::deepep;
  const auto counts = test::run_in_child([c, spec]() mutable {
    c.gpus = spec.total_gpus();
    const PreparedRun run = prepare_run(c, spec, flag_namer());
    std::vector<RankRecord> records(static_cast<std::size_t>(c.gpus));
    const sim::SimResult r = sim::simulate(spec, c.gpus, generation_program(run, records));
    double normal = 0, low_latency = 0, last_normal_end = 0, first_low_latency_start = 1e30;
    for (const core::Span& s : r.ranks[0].spans) {
      if (s.name == "alltoall/deepep") ++normal, last_normal_end = std::max(last_normal_end, s.end_s);
      if (s.name == "alltoall/deepep-ll") ++low_latency, first_low_latency_start = std::min(first_low_latency_start, s.start_s);
    }
    return std::vector<double>{normal, low_latency, last_normal_end <= first_low_latency_start ? 1.0 : 0.0};
  });
  const double moe_layers = core::ModelConfig::paper_gpt_moe(32).moe_layers(), decode_passes = 3;
  EXPECT_EQ(counts[0], 2 * moe_layers);                  // dispatch and combine of the prefill
  EXPECT_EQ(counts[1], 2 * moe_layers * decode_passes);  // ... of every decode pass
  EXPECT_EQ(counts[2], 1.0);
}

TEST(InferenceSim, SameInputsGiveIdenticalResults) {
  const auto spec = cluster(1, 2);
  InferenceConfig c = make(core::ModelConfig::paper_gpt_moe(16), "moesys", 3, HostMemory::pinned, 8, 64, 6);
  c.workload = {{"kind", "zipf"}, {"exponent", 1.1}, {"seed", 3}};
  const auto a = simulate(c, spec), b = simulate(c, spec);
  EXPECT_EQ(a, b);
}

}  // namespace
}  // namespace moesys::policies::inference
