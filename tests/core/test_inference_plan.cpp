// Inference planning without a simulator: weight sizes, the memory plan that the generation program's own
// allocations give on the ledger (footprints per policy, KV cache), its feasibility errors (with their numbers),
// configuration checks, routing tables and the metric arithmetic.
#include <gtest/gtest.h>

#include <string>

#include "core/error.hpp"
#include "policies/inference/metrics.hpp"
#include "policies/inference/plan.hpp"
#include "policies/inference/policies.hpp"
#include "policies/inference/program.hpp"

namespace moesys::policies::inference {
namespace {

core::ClusterSpec a100(const std::string& gpu = "a100-40g") {
  core::ClusterGeneratorOptions o;
  o.nodes = 1;
  o.gpus_per_node = 1;
  o.nics_per_node = 1;
  o.gpu = gpu;
  return core::generate_cluster(o);
}
core::ClusterSpec a100_40g() { return a100(); }

InferenceConfig config(int experts, const std::string& policy, int slots = 2) {
  InferenceConfig c;
  c.model = core::ModelConfig::paper_gpt_moe(experts);
  c.policy = policy;
  c.preset = policy;
  c.ring_slots = slots;
  c.host_memory = HostMemory::pinned;
  return c;
}

// Runs `fn`, expects an exception of type E, returns its message.
template <typename E, typename F>
std::string message_of(F fn) {
  try {
    fn();
  } catch (const E& e) {
    return e.what();
  }
  ADD_FAILURE() << "no exception";
  return "";
}

TEST(InferenceSizes, WeightsAddUpToTheModel) {
  InferenceConfig c = config(16, "moesys");
  const WeightSizes w = weight_sizes(c);
  EXPECT_EQ(w.layers(), 12);
  EXPECT_EQ(w.moe_layers(), 12);
  EXPECT_EQ(w.dense_bytes() + w.expert_bytes(), static_cast<std::uint64_t>(c.model.total_params()) * 2);
  EXPECT_EQ(w.layer_expert_bytes, 16ull * 134238208 * 2);
  // Expert parallelism splits the experts, not the dense weights.
  c.gpus = 4;
  const WeightSizes split = weight_sizes(c);
  EXPECT_EQ(split.layer_expert_bytes * 4, w.layer_expert_bytes);
  EXPECT_EQ(split.dense_bytes(), w.dense_bytes());
}

TEST(InferencePlan, KvCacheIsTwoTensorsPerLayerForTheLongestContext) {
  // The program's cache: K and V of every layer, room for the whole context, allocated once.
  InferenceConfig c = config(8, "all-in-gpu");
  c.batch = 3;
  c.prompt_tokens = 100;
  c.output_tokens = 28;
  EXPECT_EQ(prepare_run(c, a100_40g(), flag_namer()).plan.kv_cache_bytes, 2ull * 12 * 3 * 128 * 4096 * 2);
}

TEST(InferencePolicies, RegistryKnowsThreePoliciesAndNamesThemInErrors) {
  EXPECT_EQ(policy_names(), "all-in-gpu, deepspeed, moesys");
  const std::string msg = message_of<core::ConfigError>([] { policy_info("zero-offload"); });
  EXPECT_NE(msg.find("unknown policy \"zero-offload\" (known: all-in-gpu, deepspeed, moesys)"), std::string::npos);
}

TEST(InferencePolicies, FootprintsFollowTheMechanisms) {
  // Read from the program's ledger: what each policy's settings make the one generation program allocate.
  const core::ClusterSpec spec = a100("a100-80g");
  InferenceConfig c = config(16, "moesys", 3);
  c.output_tokens = 4;
  const WeightSizes w = weight_sizes(c);
  const Footprint ring3 = prepare_run(c, spec, flag_namer()).plan.weights;
  EXPECT_EQ(ring3.hbm_weights, w.dense_bytes() + 3 * w.layer_expert_bytes);
  EXPECT_EQ(ring3.host_weights, w.expert_bytes());

  c.policy = "deepspeed";
  c.host_memory = HostMemory::pageable;
  const Footprint ds = prepare_run(c, spec, flag_namer()).plan.weights;
  EXPECT_EQ(ds.hbm_weights, w.embedding_bytes + 2 * w.max_layer_bytes());  // two layer buffers, dense and experts
  EXPECT_EQ(ds.host_weights, w.dense_bytes() + w.expert_bytes());          // every dense unit's home, and the experts'
  EXPECT_GE(ds.host_staging, w.max_layer_bytes());                         // pinned staging for pageable copies
  EXPECT_LT(ds.host_staging, w.max_layer_bytes() + (1u << 20));
  c.policy = "all-in-gpu";
  c.host_memory = HostMemory::pinned;
  const Footprint all = prepare_run(c, spec, flag_namer()).plan.weights;
  EXPECT_EQ(all.hbm_weights, w.dense_bytes() + w.expert_bytes());
  EXPECT_EQ(all.host_weights, 0u);
}

TEST(InferenceConfigCheck, RingSlotsBeyondTheLayersIsAConfigError) {
  InferenceConfig c = config(16, "moesys", 13);
  const std::string msg = message_of<core::ConfigError>([&] { validate(c, flag_namer(), 1); });
  EXPECT_NE(msg.find("--ring-slots: K = 13 ring slots is more than the model's 12 MoE layers"), std::string::npos);
}

TEST(InferenceConfigCheck, ZeroSlotsIsAConfigError) {
  InferenceConfig c = config(16, "moesys", 0);
  const std::string msg = message_of<core::ConfigError>([&] { validate(c, json_namer("s.json", "runs[1]"), 1); });
  EXPECT_EQ(msg, "s.json: runs[1].ring_slots: expected at least 1 ring slot, got 0");
}

TEST(InferenceConfigCheck, ShapeErrors) {
  InferenceConfig c = config(16, "moesys");
  c.gpus = 3;
  EXPECT_NE(message_of<core::ConfigError>([&] { validate(c, flag_namer(), 8); }).find("do not divide"),
            std::string::npos);
  c.gpus = 1;
  c.prompt_tokens = 1000;
  c.output_tokens = 25;
  EXPECT_NE(message_of<core::ConfigError>([&] { validate(c, flag_namer(), 1); }).find("1025 tokens exceeds"),
            std::string::npos);
  c.prompt_tokens = 128;
  c.host_memory = HostMemory::pageable;
  EXPECT_NE(message_of<core::ConfigError>([&] { validate(c, flag_namer(), 1); }).find("--host-memory"),
            std::string::npos);
}

TEST(InferenceModel, PresetsAndObjectsWithoutTrainingBatch) {
  core::ModelConfig m;
  EXPECT_TRUE(model_preset("gpt-moe-32e", m));
  EXPECT_EQ(m.experts, 32);
  EXPECT_FALSE(model_preset("gpt-moe-0e", m));
  const nlohmann::json j = {{"name", "tiny"}, {"layers", 4},    {"hidden", 256}, {"heads", 4},
                            {"vocab", 1000},  {"seq_len", 512}, {"experts", 4},  {"top_k", 1}};
  EXPECT_EQ(parse_inference_model(j, "f.json", "model").layers, 4);
  EXPECT_THROW(parse_inference_model("gpt-moe", "f.json", "model"), core::ConfigError);
}

TEST(InferencePlan, ModelLargerThanTheGpuNeedsOffloading) {
  const core::ClusterSpec spec = a100_40g();
  InferenceConfig c = config(16, "all-in-gpu");
  c.output_tokens = 4;
  const std::string msg = message_of<core::InfeasibleError>([&] { prepare_run(c, spec, flag_namer()); });
  EXPECT_NE(msg.find("need 49.90 GiB per GPU"), std::string::npos) << msg;
  EXPECT_NE(msg.find("40.00 GiB of HBM"), std::string::npos) << msg;
  c.policy = "moesys";
  EXPECT_NO_THROW(prepare_run(c, spec, flag_namer()));
}

TEST(InferencePlan, SingleLayerThatCannotFit) {
  const core::ClusterSpec spec = a100_40g();
  InferenceConfig c = config(192, "moesys", 1);  // one layer's experts: 192 x 0.25 GiB = 48 GiB
  c.output_tokens = 2;
  const std::string msg = message_of<core::InfeasibleError>([&] { prepare_run(c, spec, flag_namer()); });
  EXPECT_NE(msg.find("a single MoE layer does not fit: its 192 experts need a 48.01 GiB slot"), std::string::npos)
      << msg;
}

TEST(InferencePlan, TooManySlotsSaysHowManyFit) {
  const core::ClusterSpec spec = a100_40g();
  InferenceConfig c = config(32, "moesys", 5);  // 8 GiB slots beside 1.9 GiB of dense weights
  c.output_tokens = 2;
  const std::string msg = message_of<core::InfeasibleError>([&] { prepare_run(c, spec, flag_namer()); });
  EXPECT_NE(msg.find("at most K = 4 slots fit"), std::string::npos) << msg;
}

TEST(InferencePlan, KvCacheThatCannotFitNamesTheLargestBatch) {
  const core::ClusterSpec spec = a100_40g();
  InferenceConfig c = config(16, "moesys", 2);
  c.batch = 1000;
  const std::string msg = message_of<core::InfeasibleError>([&] { prepare_run(c, spec, flag_namer()); });
  const auto at = msg.find("at most ");
  ASSERT_NE(at, std::string::npos) << msg;
  EXPECT_NE(msg.find("KV cache needs 29.30 GiB"), std::string::npos) << msg;
  const int most = std::stoi(msg.substr(at + 8));
  c.batch = most;  // the number in the message is the largest batch that fits
  EXPECT_NO_THROW(prepare_run(c, spec, flag_namer()));
  c.batch = most + 1;
  EXPECT_THROW(prepare_run(c, spec, flag_namer()), core::InfeasibleError);
}

TEST(InferenceRouting, EveryPassRoutesItsTokensTopKTimes) {
  InferenceConfig c = config(32, "all-in-gpu");
  c.gpus = 4;
  c.batch = 3;
  c.prompt_tokens = 10;
  c.output_tokens = 5;
  const RoutingTables t = make_routing(c, "", "workload");
  ASSERT_EQ(t.passes.size(), 5u);
  EXPECT_EQ(t.at(0, 0).total(), 4 * 3 * 10 * 2);  // prefill: batch x prompt tokens per rank
  EXPECT_EQ(t.at(4, 11).total(), 4 * 3 * 2);      // decode: one token per sequence
  std::int64_t received = 0;
  for (int r = 0; r < 4; ++r) received += RoutingTables::received(t.at(0, 0), r, 8);
  EXPECT_EQ(received, t.at(0, 0).total());
  // Uniform routing: a rank's 8 experts get their even share, within one token per expert.
  EXPECT_GE(t.max_expert_tokens, 3 * 10 * 2);
  EXPECT_LE(t.max_expert_tokens, 3 * 10 * 2 + 8);
}

TEST(InferenceMetrics, PercentilesThroughputAndPcieBound) {
  InferenceConfig c = config(16, "moesys", 2);
  c.gpus = 2;
  c.batch = 4;
  c.output_tokens = 5;
  PreparedRun run{c, weight_sizes(c), {}, {}, {}};
  // Passes end at 1, 2, 3, 4.5, 5 s on rank 0; rank 1 is later on the third pass.
  std::vector<RankRecord> records(2);
  records[0].pass_end_s = {1.0, 2.0, 3.0, 4.5, 5.0};
  records[1].pass_end_s = {1.0, 2.0, 3.5, 4.5, 5.0};
  records[0].h2d_bytes = records[1].h2d_bytes = 5000;
  // Steady state is the most a decode pass moved (the prefill's first loads do not count).
  records[0].pass_h2d_bytes = {2000, 1000, 1000, 1000, 0};
  records[1].pass_h2d_bytes = {2000, 1000, 900, 1000, 100};
  RuntimeOutcome outcome{{10, 20}, {}};
  const InferenceMetrics m = summarize(run, records, outcome, 2000.0);  // 2000 bytes/s: a step takes >= 0.5 s
  EXPECT_DOUBLE_EQ(m.ttft_s, 1.0);
  EXPECT_DOUBLE_EQ(m.tokens_per_s, 2 * 4 * 5 / 5.0);
  EXPECT_DOUBLE_EQ(m.decode_tokens_per_s, 2 * 4 * 4 / 4.0);
  EXPECT_DOUBLE_EQ(*m.tpot_p50_s, 1.0);  // steps 1.0, 1.5, 1.0, 0.5
  EXPECT_DOUBLE_EQ(*m.tpot_p99_s, 1.5);
  EXPECT_EQ(m.peak_hbm_bytes, 20u);
  EXPECT_DOUBLE_EQ(m.pcie_utilization, 5000.0 / (5.0 * 2000.0));
  EXPECT_DOUBLE_EQ(*m.pcie_bound_tokens_per_s, 2 * 4 / 0.5);
  EXPECT_DOUBLE_EQ(*m.pcie_bound_fraction, 8.0 / 16.0);
  const nlohmann::json row = run_to_json(run, m);
  EXPECT_EQ(csv_header().substr(0, 36), "preset,policy,host_memory,model,gpus");
  EXPECT_EQ(csv_row(row).substr(0, 38), "moesys,moesys,pinned,gpt-moe-16e,2,2,4");
}

}  // namespace
}  // namespace moesys::policies::inference
