// Memory planning and feasibility: exact per-rank numbers for the paper's model, and the errors a configuration
// that cannot run gets before any simulation.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/units.hpp"
#include "policies/training/model_costs.hpp"
#include "policies/training/training_plan.hpp"

using namespace moesys;
using namespace moesys::policies::training;
using nlohmann::json;

namespace {
TrainingConfig config(int experts, int gpus, const json& policy, const json& extra = json::object()) {
  json j = {
      {"model", {{"preset", "gpt-moe"}, {"experts", experts}}}, {"cluster", {{"gpus", gpus}}}, {"policy", policy}};
  j.merge_patch(extra);
  return parse_training_config(j, "f.json");
}

std::uint64_t use_of(const RankMemory& r, core::Tier t, MemoryUse u) {
  return r.at_peak[static_cast<std::size_t>(t)][static_cast<std::size_t>(u)];
}

std::string infeasible(const TrainingConfig& c) {
  try {
    make_training_plan(c);
  } catch (const core::InfeasibleError& e) {
    return e.what();
  }
  return "feasible";
}
}  // namespace

TEST(TrainingMemory, UnitTensorsAddUpToTheModel) {
  const core::ModelConfig m = core::ModelConfig::paper_gpt_moe(64);
  std::int64_t total = sum(embedding_tensors(m));
  for (int l = 0; l < m.layers; ++l) total += sum(layer_dense_tensors(m, l));
  EXPECT_EQ(total, m.dense_params() + m.gate_params());
  EXPECT_EQ(sum(expert_tensors(m)), m.expert_params_per_expert());
}

TEST(TrainingMemory, PaperModelOn64GpusWithDeepSpeed) {
  const TrainingPlan p = make_training_plan(config(64, 64, {{"preset", "deepspeed"}}));
  const RankMemory& r = p.memory.ranks[0];
  const core::ModelConfig& m = p.config.model;
  const std::uint64_t dense = static_cast<std::uint64_t>(m.dense_params() + m.gate_params());
  const std::uint64_t experts = 12ull * static_cast<std::uint64_t>(m.expert_params_per_expert());  // one per layer
  // ZeRO-2: fp16 dense parameters replicated (plus one padded tail of 64 elements), gradients and optimizer states
  // in 64 partitions (each bucket padded to a multiple of 64), the embedding gradient whole (it is written by the
  // first and the last kernel of backward); experts whole.
  EXPECT_EQ(use_of(r, core::Tier::hbm, MemoryUse::parameters), 2 * (dense + 64) + 2 * experts);
  const std::uint64_t embedding = static_cast<std::uint64_t>(sum(embedding_tensors(m)));
  const std::uint64_t grads_low = 2 * ((dense + 63) / 64) + 2 * ((embedding + 63) / 64 * 64) + 2 * experts;
  EXPECT_GE(use_of(r, core::Tier::hbm, MemoryUse::gradients), grads_low);
  EXPECT_LE(use_of(r, core::Tier::hbm, MemoryUse::gradients), grads_low + 2 * 13 * 12);  // <= one element per bucket
  // Activations kept per token (a = 2 bytes): attention LN1 out, Q, K, V, context, residual, LN2 out, layer output
  // 8h*a plus two layernorms' statistics 4a; gate probabilities E*a, experts and slots 2*4k, weights k*a; per
  // padded row (64 peers x capacity 308) expert input h*a, pre- and post-activation 2f*a, returned row h*a.
  const double n = 8192, h = 4096, f = 16384, rows = 64 * 308, a = 2;
  const double layer = n * (8 * h * a + 4 * a) + n * (64 * a + 8 * 2 + 2 * a) + rows * (h + 2 * f) * a + rows * h * a;
  const double expected = 12 * layer + n * h * a + n * (h * a + 2 * a) + 2 * n * 50304 * a;
  EXPECT_EQ(use_of(r, core::Tier::hbm, MemoryUse::activations), static_cast<std::uint64_t>(expected));
  EXPECT_LT(static_cast<double>(r.peak(core::Tier::hbm)), 80 * core::kGiB);
}

TEST(TrainingMemory, Zero3ShardsDenseParametersInTheNode) {
  const TrainingPlan p = make_training_plan(config(64, 64, {{"preset", "moesys"}}));
  const core::ModelConfig& m = p.config.model;
  const std::uint64_t dense = static_cast<std::uint64_t>(m.dense_params() + m.gate_params());
  const std::uint64_t experts = 12ull * static_cast<std::uint64_t>(m.expert_params_per_expert());
  EXPECT_EQ(use_of(p.memory.ranks[5], core::Tier::hbm, MemoryUse::parameters), 2 * ((dense + 7) / 8) + 2 * experts);
}

TEST(TrainingMemory, OutOfMemoryNamesRankTierAndParts) {
  const std::string msg = infeasible(config(64, 64, {{"preset", "deepspeed"}}, {{"cluster", {{"gpu", "a100-40g"}}}}));
  EXPECT_NE(msg.find("rank 0 needs "), std::string::npos) << msg;
  EXPECT_NE(msg.find(" GiB of HBM for parameters "), std::string::npos) << msg;
  EXPECT_NE(msg.find(" + optimizer "), std::string::npos) << msg;
  EXPECT_NE(msg.find(" + activations "), std::string::npos) << msg;
  EXPECT_NE(msg.find(", has 40.0 GiB"), std::string::npos) << msg;
}

TEST(TrainingMemory, OffloadMovesExpertStatesOffTheGpu) {
  const TrainingPlan none = make_training_plan(config(64, 64, {{"preset", "moesys"}}));
  const TrainingPlan nvme = make_training_plan(config(64, 64, {{"preset", "moesys"}, {"offload", "nvme"}}));
  const RankMemory& r = nvme.memory.ranks[0];
  EXPECT_LT(r.peak(core::Tier::hbm), none.memory.ranks[0].peak(core::Tier::hbm));
  const std::uint64_t experts = 12ull * static_cast<std::uint64_t>(nvme.config.model.expert_params_per_expert());
  EXPECT_EQ(use_of(r, core::Tier::ssd, MemoryUse::optimizer), 12 * experts);
  EXPECT_EQ(nvme.memory.cache_entries, 12);  // the whole host share easily holds 12 experts' states
}

TEST(TrainingMemory, ShapeErrorsCarryTheNumbers) {
  EXPECT_NE(infeasible(config(12, 8, {{"preset", "deepspeed"}}, {{"parallel", {{"expert_parallel", 8}}}}))
                .find("12 experts cannot be divided evenly over an expert-parallel group of 8 ranks"),
            std::string::npos);
  EXPECT_NE(
      infeasible(config(8, 8, {{"preset", "deepspeed"}}, {{"model", {{"global_batch", 100}, {"micro_batch", 4}}}}))
          .find("global batch of 100 sequences does not divide evenly over 8 ranks"),
      std::string::npos);
  EXPECT_NE(infeasible(config(8, 8, {{"preset", "deepspeed"}}, {{"model", {{"global_batch", 96}, {"micro_batch", 8}}}}))
                .find("12 sequences per rank"),
            std::string::npos);
  EXPECT_NE(infeasible(config(24, 24, {{"preset", "moesys"}}, {{"parallel", {{"expert_parallel", 12}}}}))
                .find("hierarchical all-to-all needs expert-parallel groups of whole nodes"),
            std::string::npos);
}
