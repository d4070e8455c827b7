// Pipeline parallelism: the 1F1B order, the layout of stages and groups, the parallel block's parse errors, the
// combinations refused with their reason, and what stages and recompute do to each rank's memory.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "policies/training/model_costs.hpp"
#include "policies/training/pipeline_schedule.hpp"
#include "policies/training/rank_state.hpp"
#include "policies/training/training_plan.hpp"

using namespace moesys;
using namespace moesys::policies::training;
using nlohmann::json;

namespace {
// A Qwen3-like model of 8 layers (untied output layer, so that a pipeline may split it).
json small_untied_model() {
  return {{"preset", "qwen3-30b-a3b"}, {"layers", 8}, {"global_batch", 64}, {"micro_batch", 1}};
}

json run_config(const json& parallel, const json& policy = {{"preset", "deepspeed"}, {"dense", "distributed"}}) {
  return {{"model", small_untied_model()},
          {"cluster", {{"gpus", 32}, {"gpu", "h100"}}},
          {"parallel", parallel},
          {"policy", policy}};
}

std::string config_error(const json& j) {
  try {
    parse_training_config(j, "f.json");
  } catch (const core::ConfigError& e) {
    return e.what();
  }
  return "accepted";
}

std::string infeasible(const json& j) {
  try {
    make_training_plan(parse_training_config(j, "f.json"));
  } catch (const core::InfeasibleError& e) {
    return e.what();
  }
  return "feasible";
}

std::uint64_t hbm(const TrainingPlan& p, int rank, MemoryUse u) {
  return p.memory.ranks[static_cast<std::size_t>(rank)].at_peak[0][static_cast<std::size_t>(u)];
}
}  // namespace

TEST(PipelineSchedule, OneStageAlternatesForwardAndBackward) {
  const std::vector<PipelinePass> expected = {{true, 0}, {false, 0}, {true, 1}, {false, 1}, {true, 2}, {false, 2}};
  EXPECT_EQ(one_f_one_b(1, 0, 3), expected);
}

TEST(PipelineSchedule, FirstStageWarmsUpWithOneForwardPerLaterStage) {
  const std::vector<PipelinePass> expected = {{true, 0},  {true, 1},  {true, 2},  {true, 3},  {false, 0},
                                              {true, 4},  {false, 1}, {false, 2}, {false, 3}, {false, 4}};
  EXPECT_EQ(one_f_one_b(4, 0, 5), expected);
}

TEST(PipelineSchedule, EveryStageRunsEachMicroBatchOnceWithAtMostStagesLeftInFlight) {
  for (int stages : {1, 2, 4, 16})
    for (int micro : {1, 3, 16})
      for (int s = 0; s < stages; ++s) {
        std::map<int, int> forward_at, backward_at;
        int in_flight = 0, most = 0, i = 0;
        for (const PipelinePass& p : one_f_one_b(stages, s, micro)) {
          (p.forward ? forward_at : backward_at)[p.micro] = i++;
          in_flight += p.forward ? 1 : -1;
          most = std::max(most, in_flight);
        }
        ASSERT_EQ(static_cast<int>(forward_at.size()), micro);
        ASSERT_EQ(static_cast<int>(backward_at.size()), micro);
        for (int m = 0; m < micro; ++m) EXPECT_LT(forward_at[m], backward_at[m]);
        EXPECT_EQ(most, std::min(stages - s, micro)) << stages << " stages, stage " << s << ", " << micro;
      }
}

TEST(PipelineSchedule, InterleavedStagesFollowMegatronsOrder) {
  // 2 stages, 2 chunks each, 4 micro-batches: stage 0 warms up with (2 - 0 - 1) 2 + (2 - 1) 2 = 4 forwards.
  const std::vector<PipelinePass> stage0 = interleaved_1f1b(2, 0, 4, 2);
  const std::vector<PipelinePass> head = {{true, 0, 0}, {true, 1, 0}, {true, 0, 1}, {true, 1, 1},
                                          {true, 2, 0}, {false, 0, 1}, {true, 3, 0}, {false, 1, 1}};
  EXPECT_EQ(std::vector<PipelinePass>(stage0.begin(), stage0.begin() + 8), head);
  for (int stages : {2, 4})
    for (int s = 0; s < stages; ++s) {
      std::map<std::pair<int, int>, int> forward_at, backward_at;
      int i = 0;
      for (const PipelinePass& p : interleaved_1f1b(stages, s, 2 * stages, 3))
        (p.forward ? forward_at : backward_at)[{p.micro, p.chunk}] = i++;
      ASSERT_EQ(forward_at.size(), static_cast<std::size_t>(2 * stages * 3));
      ASSERT_EQ(backward_at.size(), forward_at.size());
      for (const auto& [pass, at] : forward_at) EXPECT_LT(at, backward_at[pass]);
    }
  EXPECT_EQ(interleaved_1f1b(4, 1, 8, 1), one_f_one_b(4, 1, 8));
}

TEST(PipelineLayout, StagesAreContiguousBlocksWithTheirOwnGroups) {
  const TrainingPlan p = make_training_plan(
      parse_training_config(run_config({{"pp", 4}, {"ep", 4}, {"stage_layers", {3, 2, 2, 1}}}), "f.json"));
  const Layout& l = p.layout;
  EXPECT_EQ(l.ranks, 32);
  EXPECT_EQ(l.world, 8);
  EXPECT_EQ(l.chunk_first_layer, (std::vector<int>{0, 3, 5, 7, 8}));
  EXPECT_EQ(l.stage_of_layer(4), 1);
  EXPECT_EQ(l.stage_of_layer(7), 3);
  EXPECT_EQ(l.stage(13), 1);
  EXPECT_EQ(l.local(13), 5);
  EXPECT_EQ(l.dp_group(13).ranks(), (std::vector<int>{8, 9, 10, 11, 12, 13, 14, 15}));
  EXPECT_EQ(l.ep_group(13).ranks(), (std::vector<int>{12, 13, 14, 15}));
  EXPECT_EQ(l.edp_group(13).ranks(), (std::vector<int>{9, 13}));
  EXPECT_EQ(l.node_group(13).ranks(), (std::vector<int>{8, 9, 10, 11, 12, 13, 14, 15}));
  EXPECT_EQ(l.rail_group(13).ranks(), (std::vector<int>{13}));
  // The plan routes one stage's ranks: every stage processes the same micro-batches.
  EXPECT_EQ(p.routing.at(0, 0).tokens.size(), 8u);
}

TEST(PipelineLayout, VirtualStagesHoldEveryPthChunk) {
  const TrainingPlan p = make_training_plan(
      parse_training_config(run_config({{"pp", 2}, {"vpp", 2}, {"ep", 8}, {"stage_layers", {1, 2, 3, 2}}}), "f.json"));
  EXPECT_EQ(p.layout.chunk_first_layer, (std::vector<int>{0, 1, 3, 6, 8}));
  EXPECT_EQ(p.layout.stage_of_layer(0), 0);
  EXPECT_EQ(p.layout.stage_of_layer(2), 1);
  EXPECT_EQ(p.layout.stage_of_layer(4), 0);  // chunk 2 = chunk 1 of stage 0
  EXPECT_EQ(p.layout.stage_of_layer(7), 1);
  EXPECT_NE(infeasible(run_config({{"pp", 2}, {"vpp", 3}})).find("8 layers cannot be divided evenly over 2 pipeline "
                                                                  "stages of 3 model chunks"),
            std::string::npos);
  json odd = run_config({{"pp", 4}, {"vpp", 2}});
  odd["model"]["global_batch"] = 8 * 6;  // 6 micro-batches on stages of 8 ranks
  EXPECT_NE(infeasible(odd).find("6 micro-batches per step to be a multiple of the 4 stages"), std::string::npos);
}

TEST(PipelineConfig, MalformedParallelBlocksAreConfigErrors) {
  EXPECT_NE(config_error(run_config({{"pp", 2}, {"stage_layers", {3, 4}}})).find("parallel.stage_layers"),
            std::string::npos);  // 7 of 8 layers
  EXPECT_NE(config_error(run_config({{"pp", 2}, {"stage_layers", {8}}})).find("one count per pipeline stage (2)"),
            std::string::npos);
  EXPECT_NE(config_error(run_config({{"pp", 2}, {"stage_layers", {-1, 9}}})).find("parallel.stage_layers[0]"),
            std::string::npos);
  EXPECT_EQ(config_error(run_config({{"pp", 2}, {"stage_layers", {8, 0}}})), "accepted") << "a chunk of no layer";
  EXPECT_NE(config_error(run_config({{"cp", 0}})).find("parallel.cp"), std::string::npos);
  EXPECT_NE(config_error(run_config({{"etp", 0}})).find("parallel.etp"), std::string::npos);
  EXPECT_NE(config_error(run_config({{"tp", 0}})).find("parallel.tp"), std::string::npos);
  EXPECT_NE(config_error(run_config({{"ep", 4}, {"expert_parallel", 4}})).find("not both"), std::string::npos);
  EXPECT_NE(config_error(run_config({{"recompute", "some"}})).find("parallel.recompute"), std::string::npos);
  EXPECT_NE(config_error(run_config({{"pp", 0}})).find("parallel.pp"), std::string::npos);
  EXPECT_NE(config_error(run_config({{"vp", 2}})).find("unknown key"), std::string::npos);
  EXPECT_NE(config_error(run_config({{"pp", 2}, {"vpp", 2}, {"stage_layers", {4, 4}}}))
                .find("one count per pipeline stage and model chunk"),
            std::string::npos);
  EXPECT_EQ(config_error(run_config({{"tp", 1}, {"cp", 1}, {"pp", 2}})), "accepted");
}

TEST(PipelineConfig, ImpossibleMappingsAreRefusedWithTheNumbers) {
  EXPECT_NE(infeasible(run_config({{"pp", 3}})).find("32 ranks cannot be divided into 3 pipeline stages"),
            std::string::npos);
  json six_layers = run_config({{"pp", 4}});
  six_layers["model"]["layers"] = 6;
  EXPECT_NE(infeasible(six_layers).find("6 layers cannot be divided evenly over 4 pipeline stages"), std::string::npos);
  six_layers["parallel"]["stage_layers"] = {2, 2, 1, 1};
  EXPECT_EQ(infeasible(six_layers), "feasible");
  EXPECT_NE(infeasible(run_config({{"pp", 16}, {"ep", 2}})).find("16 pipeline stages exceed the model's 8 layers"),
            std::string::npos);
  EXPECT_NE(infeasible(run_config({{"pp", 8}, {"ep", 8}})).find("exceeds the 4 ranks of a pipeline stage"),
            std::string::npos);
  json tied = run_config({{"pp", 2}});
  tied["model"] = {{"preset", "gpt-moe"}, {"experts", 8}, {"global_batch", 64}, {"micro_batch", 1}};
  EXPECT_EQ(infeasible(tied), "feasible") << "a tied table is copied to the last stage";
  EXPECT_NE(infeasible(run_config({{"pp", 2}}, {{"preset", "moesys"}})).find("dense zero3"), std::string::npos);
  EXPECT_NE(infeasible(run_config({{"pp", 2}}, {{"preset", "deepspeed"}, {"offload", "cpu"}})).find("offloaded"),
            std::string::npos);
  EXPECT_NE(infeasible(run_config({{"recompute", "full"}}, {{"preset", "deepspeed"}, {"offload", "cpu"}}))
                .find("full recompute with offloaded experts"),
            std::string::npos);
}

TEST(PipelineMemory, StagesHoldTheirLayersAndTheFirstKeepsTheMostActivations) {
  // 8 layers on 32 GPUs: one stage of 32 ranks, or 4 stages of 8 (2 layers each) with the same expert-parallel size.
  const TrainingPlan one = make_training_plan(parse_training_config(run_config({{"ep", 8}}), "f.json"));
  const TrainingPlan four = make_training_plan(parse_training_config(run_config({{"pp", 4}, {"ep", 8}}), "f.json"));
  // A stage holds a quarter of the layers' experts.
  EXPECT_NEAR(static_cast<double>(hbm(four, 8, MemoryUse::parameters)),
              static_cast<double>(hbm(one, 0, MemoryUse::parameters)) / 4, 0.3 * static_cast<double>(hbm(one, 0, MemoryUse::parameters)));
  // 1F1B: stage s keeps up to 4 - s micro-batches of its 2 layers in flight (the last stage also holds the logits).
  const double first = static_cast<double>(hbm(four, 0, MemoryUse::activations));
  const double second = static_cast<double>(hbm(four, 8, MemoryUse::activations));
  const double third = static_cast<double>(hbm(four, 16, MemoryUse::activations));
  EXPECT_NEAR(first / third, 2.0, 0.2);
  EXPECT_NEAR(second / third, 1.5, 0.15);
}

TEST(PipelineMemory, FullRecomputeKeepsOnlyEachLayersInput) {
  const TrainingPlan kept = make_training_plan(parse_training_config(run_config({{"pp", 4}, {"ep", 8}}), "f.json"));
  const TrainingPlan recomputed = make_training_plan(
      parse_training_config(run_config({{"pp", 4}, {"ep", 8}, {"recompute", "full"}}), "f.json"));
  EXPECT_LT(hbm(recomputed, 0, MemoryUse::activations) * 3, hbm(kept, 0, MemoryUse::activations));
}

TEST(RecomputeConfig, ModulesOnlyWithSelectiveAndByName) {
  const TrainingConfig all = parse_training_config(run_config({{"recompute", "selective"}}), "f.json");
  EXPECT_EQ(all.recompute, Recompute::selective);
  EXPECT_TRUE(all.recompute_modules.layernorm && all.recompute_modules.moe_act && all.recompute_modules.mlp &&
              all.recompute_modules.mla_up_proj);
  const TrainingConfig one =
      parse_training_config(run_config({{"recompute", "selective"}, {"recompute_modules", {"moe_act"}}}), "f.json");
  EXPECT_TRUE(one.recompute_modules.moe_act);
  EXPECT_FALSE(one.recompute_modules.layernorm || one.recompute_modules.mlp || one.recompute_modules.mla_up_proj);
  EXPECT_NE(config_error(run_config({{"recompute", "full"}, {"recompute_modules", {"mlp"}}}))
                .find("parallel.recompute_modules: only with \"recompute\": \"selective\""),
            std::string::npos);
  EXPECT_NE(config_error(run_config({{"recompute_modules", {"mlp"}}})).find("parallel.recompute_modules"),
            std::string::npos);
  EXPECT_NE(config_error(run_config({{"recompute", "selective"}, {"recompute_modules", {"mlp", "core_attn"}}}))
                .find("parallel.recompute_modules[1]: expected \"layernorm\""),
            std::string::npos);
  EXPECT_NE(config_error(run_config({{"recompute", "selective"}, {"recompute_modules", json::array()}}))
                .find("non-empty array"),
            std::string::npos);
  EXPECT_NE(config_error(run_config({{"recompute", "selective"}, {"recompute_modules", "mlp"}})).find("non-empty array"),
            std::string::npos);
}

TEST(PipelineMemory, SelectiveRecomputeDropsExactlyTheNamedParts) {
  // One stage of 32 ranks: one micro-batch is in flight, so at the peak every layer's block is held once. Dropping
  // the norm outputs frees two [n][h] views per layer and adds one scratch pair to the workspace; the MLA module
  // changes nothing on a model without MLA.
  const json none_cfg = run_config({{"ep", 8}});
  auto with = [&](const json& modules) {
    json c = none_cfg;
    c["parallel"]["recompute"] = "selective";
    c["parallel"]["recompute_modules"] = modules;
    return make_training_plan(parse_training_config(c, "f.json"));
  };
  const TrainingPlan none = make_training_plan(parse_training_config(none_cfg, "f.json"));
  const TrainingPlan norms = with({"layernorm"}), mla = with({"mla_up_proj"}), act = with({"moe_act"});
  const std::uint64_t n = static_cast<std::uint64_t>(none.routing.at(0, 0).tokens[0]);
  const std::uint64_t h = static_cast<std::uint64_t>(none.config.model.hidden), a = 2;  // bf16
  const std::uint64_t layers = static_cast<std::uint64_t>(none.config.model.layers);
  EXPECT_EQ(hbm(none, 0, MemoryUse::activations) - hbm(norms, 0, MemoryUse::activations), layers * 2 * n * h * a);
  EXPECT_EQ(hbm(norms, 0, MemoryUse::buffers) - hbm(none, 0, MemoryUse::buffers), 2 * n * h * a);
  EXPECT_EQ(hbm(mla, 0, MemoryUse::activations), hbm(none, 0, MemoryUse::activations));
  EXPECT_EQ(hbm(mla, 0, MemoryUse::buffers), hbm(none, 0, MemoryUse::buffers));
  EXPECT_LT(hbm(act, 0, MemoryUse::activations), hbm(none, 0, MemoryUse::activations));
}

TEST(PipelineMemory, DistributedOptimizerShardsTheExpertsStatesOverTheirReplicas) {
  // 32 ranks, expert parallelism 8: every expert has 4 replicas. The distributed optimizer keeps a quarter of the
  // experts' optimizer states per rank (and a piece of their gradients besides the full buffer); ddp keeps them whole.
  auto plan = [](const char* dense) {
    return make_training_plan(
        parse_training_config(run_config({{"ep", 8}}, {{"preset", "deepspeed"}, {"dense", dense}}), "f.json"));
  };
  const TrainingPlan ddp = plan("ddp"), distributed = plan("distributed");
  const double whole = static_cast<double>(hbm(ddp, 0, MemoryUse::optimizer));
  const double sharded = static_cast<double>(hbm(distributed, 0, MemoryUse::optimizer));
  // The dense part is sharded 32 ways, the experts' 4 ways: between a 32nd and a quarter of the whole (before, the
  // experts' states stayed whole, above a quarter).
  EXPECT_LE(sharded, 0.25 * whole);
  EXPECT_GT(sharded, whole / 32);
}

TEST(PipelineMemory, ATiedTokenTableIsHeldByTheFirstAndTheLastStage) {
  // The lookup needs the table on the first stage and the tied logits on the last: each holds a copy (their
  // gradients are summed over the embedding group, ranks of the same local index on the two stages), the stages
  // between hold none, and the learned position table stays with the lookup.
  json c = run_config({{"pp", 4}});
  c["model"] = {{"preset", "gpt-moe"}, {"experts", 8}, {"global_batch", 64}, {"micro_batch", 1}};
  const TrainingPlan plan = make_training_plan(parse_training_config(c, "f.json"));
  const core::ModelConfig& m = plan.config.model;
  const std::int64_t table = std::int64_t{m.vocab} * m.hidden;
  for (int stage = 0; stage < 4; ++stage) {
    const auto units = stage_unit_tensors(m, plan.config.policy, plan.layout, stage);
    EXPECT_EQ(units[0][kTokenTable], stage == 0 || stage == 3 ? table : 0) << "stage " << stage;
    EXPECT_EQ(units[0][kPositions] > 0, stage == 0) << "stage " << stage;
  }
  EXPECT_EQ(plan.layout.embedding_group(3 * 8 + 5).ranks(), (std::vector<int>{5, 3 * 8 + 5}));
}

TEST(PipelineLayout, MultiTokenPredictionModulesJoinTheLastStage) {
  // DeepSeek-V3's MTP module runs as a last layer (ModelConfig::with_mtp_blocks): the main layers split over the
  // stages as without it, the module's block joins the last stage (after its logits), whose unit holds the module's
  // norms and projection; the last stage keeps a copy of the token table for the module's lookup.
  json c = run_config({{"pp", 4}, {"ep", 8}});
  c["model"] = {{"preset", "deepseek-v3"}, {"layers", 8}, {"experts", 64}, {"seq_len", 1024}, {"global_batch", 64},
                {"micro_batch", 1}};
  const TrainingPlan plan = make_training_plan(parse_training_config(c, "f.json"));
  const core::ModelConfig& m = plan.config.model;
  EXPECT_EQ(plan.model.layers, 8);
  EXPECT_EQ(m.layers, 9);
  EXPECT_EQ(plan.layout.chunk_first_layer, (std::vector<int>{0, 2, 4, 6, 9}));
  const auto last = stage_unit_tensors(m, plan.config.policy, plan.layout, 3);
  EXPECT_EQ(last[9][kMtpProj], 2 * std::int64_t{m.hidden} * m.hidden);
  EXPECT_EQ(last[8][kMtpProj], 0);
  EXPECT_EQ(last[0][kTokenTable], std::int64_t{m.vocab} * m.hidden);
  EXPECT_EQ(stage_unit_tensors(m, plan.config.policy, plan.layout, 1)[0][kTokenTable], 0);
  EXPECT_EQ(plan.routing.at(0, 0).layers.size(), static_cast<std::size_t>(m.moe_layers()));
}
