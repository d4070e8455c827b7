// The training program that the simulator runs, on real CPU ranks: every policy computes the same model, so the
// presets and their toggles must produce the same losses step by step (up to the order of floating-point sums in
// the reductions), and the loss must fall on the synthetic task.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "exec/cpu/cpu_runtime.hpp"
#include "model/tensors.hpp"
#include "policies/training/expert_residency.hpp"
#include "policies/training/training_plan.hpp"

namespace moesys::exec {
namespace {

namespace tr = policies::training;
using nlohmann::json;

int world_size() {
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  return world;
}

json paper_family_model() {
  const int world = world_size();
  return {{"preset", "gpt-moe"}, {"experts", 2 * world}, {"hidden", 32}, {"heads", 2}, {"layers", 2}, {"vocab", 64},
          {"seq_len", 16}, {"micro_batch", 2}, {"global_batch", 4 * world}, {"dtype", "fp32"}};
}

// Today's architecture at test size: a dense first layer, grouped-query attention with QK norms and rotary positions, SwiGLU
// experts of their own width beside one shared expert, RMSNorm, no biases, an untied output layer.
json todays_model() {
  const int world = world_size();
  return {{"name", "modern"},        {"layers", 3},          {"first_dense_layers", 1},
          {"hidden", 32},            {"heads", 4},           {"attention", {{"kind", "gqa"}, {"kv_heads", 2}, {"qk_norm", true}}},
          {"ffn_hidden", 48},        {"expert_hidden", 16},  {"activation", "swiglu"},
          {"shared_experts", 1},     {"experts", 2 * world}, {"top_k", 2},
          {"vocab", 64},             {"norm", "rmsnorm"},    {"biases", false},
          {"positions", "rope"},     {"tied_embeddings", false}, {"seq_len", 16},
          {"micro_batch", 2},        {"global_batch", 4 * world}, {"dtype", "fp32"}};
}

// DeepSeek-V3's shape at test size: multi-head latent attention (a query latent, a key/value latent, rotary parts
// shared by the heads) and a sigmoid gate with its selection bias, choosing from one of two expert groups.
json latent_attention_model() {
  json m = todays_model();
  m["attention"] = {{"kind", "mla"},         {"q_lora_rank", 16},     {"kv_lora_rank", 8},
                    {"qk_nope_head_dim", 6}, {"qk_rope_head_dim", 4}, {"v_head_dim", 8}};
  m["gate"] = "sigmoid";
  m["experts"] = 4 * world_size();
  m["expert_groups"] = 2;
  m["max_groups_per_token"] = 1;
  return m;
}

/// This rank's counters after 6 steps of `policy` on `model`. Two nodes when the world is even: the hierarchical
/// all-to-all and ZeRO-3 have an intra- and an inter-node stage.
tr::RankCounters run_policy(const json& policy, const json& model = paper_family_model(),
                           const json& parallel = json::object()) {
  const int world = world_size();
  const int per_node = world % 2 == 0 && world > 1 ? world / 2 : world;
  json config = {
      {"model", model},
      {"cluster", {{"gpus", world}, {"gpus_per_node", per_node}, {"nics_per_node", per_node}}},
      {"policy", policy},
      {"steps", 6},
      {"learning_rate", 0.01}};
  if (!parallel.empty()) config["parallel"] = parallel;
  const tr::TrainingPlan plan = tr::make_training_plan(tr::parse_training_config(config, "test"));
  std::vector<tr::RankCounters> counters(static_cast<std::size_t>(world));
  cpu::CpuRuntime rt(plan.config.cluster);
  tr::training_program(plan, counters)(rt);
  return counters[static_cast<std::size_t>(rt.rank())];
}

std::vector<double> losses_with(const json& policy, const json& model = paper_family_model()) {
  return run_policy(policy, model).losses;
}

TEST(TrainingProgram, EveryPolicyComputesTheSameLosses) {
  const std::vector<double> reference = losses_with({{"preset", "deepspeed"}});
  ASSERT_EQ(reference.size(), 6u);
  for (double l : reference) ASSERT_TRUE(std::isfinite(l));
  EXPECT_NEAR(reference.front(), std::log(64.0), 0.5);
  EXPECT_LT(reference.back(), reference.front() - 0.2);  // it learns (two micro-batches per step accumulate)
  const json variants[] = {
      {{"preset", "moesys"}},  // zero3 + counted dispatch + hierarchical all-to-all + 4 overlapped chunks
      {{"preset", "moesys"}, {"dense", "ddp"}, {"bucket_mib", 0}, {"dispatch", "padded"}},
      {{"preset", "deepspeed"}, {"dispatch", "counts"}, {"overlap_chunks", 3}, {"grad_overlap", true},
       {"bucket_mib", 0.01}},
      {{"preset", "static-multitask"}},
      // The column-partitioned table: its lookup, tied logits in 3 chunks of 22 rows and their gradients.
      {{"preset", "deepspeed"}, {"embedding", "partition"}, {"bucket_mib", 0.003}},
      {{"preset", "moesys"}, {"embedding", "partition"}}};
  for (const json& v : variants) {
    const std::vector<double> l = losses_with(v);
    ASSERT_EQ(l.size(), reference.size()) << v.dump();
    for (std::size_t i = 0; i < l.size(); ++i)
      EXPECT_NEAR(l[i], reference[i], 1e-4 * std::abs(reference[i])) << v.dump() << " step " << i;
  }
  // The distributed optimizer with two replicas of every expert: the experts' gradients are reduce-scattered in
  // chunks (small buckets: several per layer, padded tails), each replica updates its pieces, the pieces are
  // all-gathered back.
  if (world_size() % 2 == 0) {
    const json v = {{"preset", "deepspeed"}, {"dense", "distributed"}, {"bucket_mib", 0.01}};
    const std::vector<double> l = run_policy(v, paper_family_model(), {{"ep", world_size() / 2}}).losses;
    ASSERT_EQ(l.size(), reference.size());
    for (std::size_t i = 0; i < l.size(); ++i)
      EXPECT_NEAR(l[i], reference[i], 1e-4 * std::abs(reference[i])) << v.dump() << " step " << i;
  }
}

// `prefetch`: the offloaded variant's rule. 2D prefetch updates only experts that received tokens in the step (lazy
// AdamW), so it computes the resident run's losses only where every expert receives tokens every step; group-limited
// routing leaves some experts idle, and such a model is checked with all-experts prefetch.
void expect_same_losses_under_every_policy(const json& model, const char* prefetch) {
  const std::vector<double> reference = losses_with({{"preset", "deepspeed"}}, model);
  ASSERT_EQ(reference.size(), 6u);
  for (double l : reference) ASSERT_TRUE(std::isfinite(l));
  EXPECT_NEAR(reference.front(), std::log(64.0), 0.5);
  EXPECT_LT(reference.back(), reference.front() - 0.2);
  const json variants[] = {{{"preset", "moesys"}},
                           {{"preset", "moesys"}, {"dense", "ddp"}, {"bucket_mib", 0}, {"dispatch", "padded"}},
                           {{"preset", "deepspeed"}, {"dispatch", "counts"}, {"overlap_chunks", 3}},
                           {{"preset", "moesys"}, {"offload", "cpu"}, {"prefetch", prefetch}}};
  for (const json& v : variants) {
    const std::vector<double> l = losses_with(v, model);
    ASSERT_EQ(l.size(), reference.size()) << v.dump();
    for (std::size_t i = 0; i < l.size(); ++i)
      EXPECT_NEAR(l[i], reference[i], 1e-4 * std::abs(reference[i])) << v.dump() << " step " << i;
  }
}

TEST(TrainingProgram, TodaysArchitectureComputesTheSameLossesUnderEveryPolicy) {
  expect_same_losses_under_every_policy(todays_model(), "2d");
}

TEST(TrainingProgram, DeepSeekShapeComputesTheSameLossesUnderEveryPolicy) {
  expect_same_losses_under_every_policy(latent_attention_model(), "all-experts");
}

// Offloaded experts live in host memory or in SSD files and are copied into GPU slots before their FFNs; their
// gradients go home and a host AdamW updates them. Every residency strategy computes the resident run's losses
// (2D prefetch updates only experts with tokens, and every expert receives tokens in this configuration).
TEST(TrainingProgram, OffloadedExpertsComputeTheSameLosses) {
  const std::vector<double> reference = losses_with({{"preset", "moesys"}});
  ASSERT_EQ(reference.size(), 6u);
  const json variants[] = {
      {{"preset", "moesys"}, {"offload", "cpu"}, {"prefetch", "all-experts"}},
      {{"preset", "moesys"}, {"offload", "cpu"}, {"prefetch", "2d"}},
      {{"preset", "moesys"}, {"offload", "nvme"}, {"prefetch", "all-experts"}},
      {{"preset", "moesys"}, {"offload", "nvme"}, {"prefetch", "2d"}},
      // A cache of one expert: admissions, evictions with write-back, and experts staged from the SSD.
      {{"preset", "moesys"}, {"offload", "nvme"}, {"prefetch", "2d"}, {"cache", {{"capacity_fraction", 0.25}}}},
      {{"preset", "deepspeed"}, {"offload", "nvme"}, {"dispatch", "counts"}}};
  for (const json& v : variants) {
    const std::vector<double> l = losses_with(v);
    ASSERT_EQ(l.size(), reference.size()) << v.dump();
    for (std::size_t i = 0; i < l.size(); ++i)
      EXPECT_NEAR(l[i], reference[i], 1e-4 * std::abs(reference[i])) << v.dump() << " step " << i;
  }
}

// Expert replicas: from the second step, copies of the most loaded experts in spare slots take a share of their
// rows; the copies' gradients are summed into the owners' and the updated weights sent back, so the losses are
// those of the run without copies (and copies were made).
TEST(TrainingProgram, ExpertReplicasComputeTheSameLosses) {
  const json base = {{"preset", "deepspeed"}, {"dispatch", "counts"}};
  const std::vector<double> reference = losses_with(base);
  ASSERT_EQ(reference.size(), 6u);
  // The last case splits the ranks into expert-parallel groups of 2 (copies inside a group, owners' gradients then
  // reduced over the groups).
  const int ep = world_size() % 2 == 0 ? 2 : world_size();
  const std::pair<json, json> replicas[] = {{{{"kind", "eplb"}, {"slots", 1}}, json::object()},
                                            {{{"kind", "eplb"}, {"slots", 2}, {"every", 2}}, json::object()},
                                            {{{"kind", "hot"}, {"slots", 1}}, json::object()},
                                            {{{"kind", "eplb"}, {"slots", 1}, {"scope", "node"}}, json::object()},
                                            {{{"kind", "eplb"}, {"slots", 1}}, {{"ep", ep}}}};
  for (const auto& [r, parallel] : replicas) {
    if (r.contains("scope") && world_size() == 2) continue;  // one rank per node: nothing to copy inside a node
    json policy = base;
    policy["replicas"] = r;
    policy["overlap_chunks"] = 2;
    const tr::RankCounters mine = run_policy(policy, paper_family_model(), parallel);
    ASSERT_EQ(mine.losses.size(), reference.size()) << r.dump();
    for (std::size_t i = 0; i < reference.size(); ++i)
      EXPECT_NEAR(mine.losses[i], reference[i], 1e-4 * std::abs(reference[i])) << r.dump() << " step " << i;
    int refreshes = mine.replica_refreshes;
    MPI_Allreduce(MPI_IN_PLACE, &refreshes, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (world_size() > 1) {
      EXPECT_GT(refreshes, 0) << r.dump();
    }
  }
}

// Ring memory (the inference side's strategy) on real buffers: two slots, four layers, each layer's values
// fetched ahead as the slot of a finished layer is released, and the slot holds exactly that layer's values.
TEST(ExpertResidency, RingFetchesAheadIntoReleasedSlots) {
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  core::ClusterGeneratorOptions o;
  o.nodes = 1, o.gpus_per_node = world, o.nics_per_node = world;
  cpu::CpuRuntime rt(core::generate_cluster(o));
  tr::ExpertShape shape;
  shape.layers = 4, shape.local = 2, shape.expert_elems = 8;
  tr::ResidencySettings set;
  set.strategy = tr::ResidencyStrategy::ring, set.home = core::Tier::ssd, set.slots = 2, set.train = false;
  const tr::ExpertStorage storage = tr::allocate_expert_storage(rt, shape, set);
  std::vector<float> home(static_cast<std::size_t>(shape.layers * shape.layer_elems()));
  for (std::size_t i = 0; i < home.size(); ++i) home[i] = static_cast<float>(i);
  moesys::model::upload(rt, storage.home_params, home.data(), home.size() * 4);
  tr::RankCounters counters;
  tr::ExpertResidency ring(rt, shape, set, storage, counters);
  ring.begin_step(1);
  ring.begin_pass({0, 1, 2, 3});
  const std::vector<bool> all(2, true);
  for (int l = 0; l < 4; ++l) {
    ring.acquire(l, false, all, core::streams::kCompute);
    rt.synchronize();
    const std::vector<float> got = moesys::model::download_floats(rt, ring.views(l).params, shape.layer_elems());
    for (std::int64_t i = 0; i < shape.layer_elems(); ++i)
      ASSERT_EQ(got[static_cast<std::size_t>(i)], home[static_cast<std::size_t>(l * shape.layer_elems() + i)])
          << "layer " << l << " element " << i;
    ring.release(l, {});
  }
  EXPECT_EQ(counters.expert_fetches, 4 * 2);
  EXPECT_EQ(counters.on_demand_fetches, 0);
}

}  // namespace
}  // namespace moesys::exec
