// Text generation with the one per-rank program on real CPU ranks: every inference policy (experts resident, the
// moesys ring with K slots, ZeRO-Inference's layer-ahead fetch of experts and dense units from host memory) runs
// the same model on the same prompts, so they must sample the same tokens.
#include <gtest/gtest.h>
#include <mpi.h>

#include <nlohmann/json.hpp>
#include <set>

#include "exec/cpu/cpu_runtime.hpp"
#include "policies/training/training_plan.hpp"

namespace moesys::exec {
namespace {

namespace tr = policies::training;
using nlohmann::json;

struct Generated {
  std::vector<std::vector<std::int32_t>> tokens;
  std::int64_t expert_fetches = 0;
  std::int64_t replica_loads = 0;  // copies this rank's spare slots received
};

Generated generate_with(const json& policy, bool ring, int slots, bool dense_from_host, int output_tokens = 6) {
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  const int per_node = world % 2 == 0 && world > 1 ? world / 2 : world;
  const json config = {{"model",
                        {{"preset", "gpt-moe"},
                         {"experts", 2 * world},
                         {"hidden", 32},
                         {"heads", 2},
                         {"layers", 4},
                         {"moe_every", 2},
                         {"vocab", 64},
                         {"seq_len", 16},
                         {"micro_batch", 2},
                         {"global_batch", 2 * world},
                         {"dtype", "fp32"}}},
                       {"cluster", {{"gpus", world}, {"gpus_per_node", per_node}, {"nics_per_node", per_node}}},
                       {"policy", policy}};
  tr::GenerationPlan g;
  g.sequences = 3;
  g.prompt_tokens = 5;
  g.output_tokens = output_tokens;
  g.ring = ring;
  g.slots = slots;
  g.dense_from_host = dense_from_host;
  const tr::TrainingPlan plan = tr::make_generation_plan(tr::parse_training_config(config, "test"), g);
  std::vector<tr::RankCounters> counters(static_cast<std::size_t>(world));
  cpu::CpuRuntime rt(plan.config.cluster);
  tr::training_program(plan, counters)(rt);
  const tr::RankCounters& mine = counters[static_cast<std::size_t>(rt.rank())];
  EXPECT_EQ(mine.pass_end_s.size(), static_cast<std::size_t>(output_tokens));
  return {mine.generated, mine.expert_fetches, mine.replica_refreshes};
}

TEST(GenerationProgram, EveryInferencePolicySamplesTheSameTokens) {
  const Generated reference = generate_with({{"preset", "moesys"}}, true, 2, false);  // all-in-gpu
  ASSERT_EQ(reference.tokens.size(), 6u);
  std::set<int> seen;
  for (const auto& pass : reference.tokens) {
    ASSERT_EQ(pass.size(), 3u);
    for (int t : pass) EXPECT_TRUE(t >= 0 && t < 64) << t;
    seen.insert(pass.begin(), pass.end());
  }
  EXPECT_GT(seen.size(), 2u);  // the tokens depend on the prompts and the weights, not a constant
  struct Variant {
    const char* name;
    json policy;
    bool ring;
    int slots;
    bool dense_from_host;
  };
  const Variant variants[] = {
      {"moesys ring, K=1", {{"preset", "moesys"}, {"offload", "cpu"}}, true, 1, false},
      {"moesys ring, K=2", {{"preset", "moesys"}, {"offload", "cpu"}}, true, 2, false},
      {"deepspeed layer offload", {{"preset", "deepspeed"}, {"offload", "cpu"}}, false, 2, true},
      {"flat all-to-all, experts resident", {{"preset", "deepspeed"}}, true, 2, false}};
  for (const Variant& v : variants) {
    const Generated r = generate_with(v.policy, v.ring, v.slots, v.dense_from_host);
    EXPECT_EQ(r.tokens, reference.tokens) << v.name;
    if (v.policy.contains("offload")) {
      EXPECT_GT(r.expert_fetches, 0) << v.name;
    }
  }
}

// Expert replicas while generating: from the second pass, copies of the most loaded experts (chosen from the gate's
// counts of the passes before, summed over the ranks) take a share of their rows; the sampled tokens are those of
// the run without copies, and copies were loaded (only into slots whose expert changed).
TEST(GenerationProgram, ExpertReplicasSampleTheSameTokens) {
  const json base = {{"preset", "deepspeed"}, {"dispatch", "counts"}};
  const Generated reference = generate_with(base, true, 2, false);
  for (const json& r : {json{{"kind", "eplb"}, {"slots", 1}}, json{{"kind", "hot"}, {"slots", 2}},
                        json{{"kind", "eplb"}, {"slots", 1}, {"scope", "node"}, {"every", 2}}}) {
    int world = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (r.contains("scope") && world == 2) continue;  // one rank per node: no node holds two members to copy between
    json policy = base;
    policy["replicas"] = r;
    const Generated g = generate_with(policy, true, 2, false);
    EXPECT_EQ(g.tokens, reference.tokens) << r.dump();
    long long loads = g.replica_loads;
    MPI_Allreduce(MPI_IN_PLACE, &loads, 1, MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
    if (world > 1) {
      EXPECT_GT(loads, 0) << r.dump();
    }
  }
}

TEST(GenerationProgram, DecodeStepsContinueThePrefill) {
  // A shorter generation samples the first tokens of a longer one: decoding reads what earlier passes cached.
  const Generated longer = generate_with({{"preset", "moesys"}}, true, 2, false, 6);
  const Generated shorter = generate_with({{"preset", "moesys"}}, true, 2, false, 3);
  ASSERT_EQ(shorter.tokens.size(), 3u);
  for (std::size_t p = 0; p < shorter.tokens.size(); ++p) EXPECT_EQ(shorter.tokens[p], longer.tokens[p]) << p;
}

}  // namespace
}  // namespace moesys::exec
