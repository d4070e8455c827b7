// Expert tensor parallelism's shapes: each member's shard of a routed expert (every split element on exactly one
// member, SwiGLU's gate and up halves split alike, b2 on all), the width a member holds, the expert groups and
// replicas of the layout, the rows each member computes, and the refused mappings.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "policies/training/model_costs.hpp"
#include "policies/training/tensor_parallel.hpp"
#include "policies/training/training_plan.hpp"

using namespace moesys;
using namespace moesys::policies::training;
using nlohmann::json;

namespace {
json config(const json& model, const json& parallel, const json& policy, int gpus = 32) {
  return {{"model", model}, {"cluster", {{"gpus", gpus}, {"gpu", "h100"}}}, {"parallel", parallel}, {"policy", policy}};
}
const json kGathered = {{"preset", "megatron"}, {"dispatcher", "all_gather"}};

/// Every element of one expert drawn as its own index and cut for each of `etp` members.
void check_shards(const core::ModelConfig& m, int etp) {
  const std::int64_t whole = m.expert_params_per_expert();
  std::vector<float> values(static_cast<std::size_t>(whole));
  for (std::int64_t i = 0; i < whole; ++i) values[static_cast<std::size_t>(i)] = static_cast<float>(i);
  const core::ModelConfig member = rank_model(m, 1, etp);
  EXPECT_EQ(member.expert_hidden() * etp, m.expert_hidden());
  EXPECT_EQ(member.shared_hidden(), m.shared_hidden()) << "shared experts keep their width";
  std::map<std::int64_t, int> copies;
  std::vector<std::vector<float>> shards;
  for (int s = 0; s < etp; ++s) {
    shards.push_back(expert_shard(m, etp, s, values.data()));
    ASSERT_EQ(static_cast<std::int64_t>(shards.back().size()), member.expert_params_per_expert());
    for (float v : shards.back()) ++copies[static_cast<std::int64_t>(v)];
  }
  const std::vector<std::int64_t> t = expert_tensors(m);
  ASSERT_EQ(static_cast<std::int64_t>(copies.size()), whole) << "every element is on some member";
  for (const auto& [index, n] : copies)
    EXPECT_EQ(n, index >= whole - t[3] ? etp : 1) << "element " << index << " (only b2 is on every member)";
  // Row 0 of W1 on member 1: its gate columns [fs, 2 fs) and, with SwiGLU, the up columns [f + fs, f + 2 fs).
  const std::int64_t f = m.expert_hidden(), fs = f / etp;
  EXPECT_EQ(shards[1][0], static_cast<float>(fs));
  if (m.ffn_in_factor() == 2) {
    EXPECT_EQ(shards[1][static_cast<std::size_t>(fs)], static_cast<float>(f + fs));
  }
  // W2's rows of member 1 start at row fs of the whole W2.
  const std::int64_t w2_local = member.hidden * member.ffn_in_factor() * fs + expert_tensors(member)[1];
  EXPECT_EQ(shards[1][static_cast<std::size_t>(w2_local)], static_cast<float>(t[0] + t[1] + fs * m.hidden));
}

std::string refusal(const json& c) {
  try {
    make_training_plan(parse_training_config(c, "f.json"));
  } catch (const core::InfeasibleError& e) {
    return e.what();
  }
  return "feasible";
}
}  // namespace

TEST(ExpertTensorParallel, ShardsPartitionEveryExpert) {
  // Small widths, so that every element's index is exact as a float.
  const json gpt = {{"preset", "gpt-moe"}, {"experts", 8}, {"hidden", 64}, {"heads", 4}};
  const core::ModelConfig gelu = parse_training_config(config(gpt, json::object(), kGathered), "f.json").model;
  ASSERT_TRUE(gelu.biases);
  check_shards(gelu, 2);
  check_shards(gelu, 4);
  const json qwen = {{"preset", "qwen3-30b-a3b"}, {"hidden", 64}, {"expert_hidden", 96}};
  const core::ModelConfig swiglu = parse_training_config(config(qwen, json::object(), kGathered), "f.json").model;
  ASSERT_EQ(swiglu.ffn_in_factor(), 2);
  check_shards(swiglu, 2);
  check_shards(swiglu, 4);
}

TEST(ExpertTensorParallel, ExpertGroupsSpanEpTimesEtpRanksAndReplicasStrideThem) {
  const Layout l = make_layout(parse_training_config(
      config({{"preset", "qwen3-30b-a3b"}, {"layers", 4}}, {{"ep", 4}, {"etp", 2}}, kGathered), "f.json"));
  EXPECT_EQ(l.expert_group(), 8);
  EXPECT_EQ(l.edp, 4);
  EXPECT_EQ(l.local_experts, 128 / 4);
  EXPECT_EQ(l.ep_group(13).ranks(), (std::vector<int>{8, 9, 10, 11, 12, 13, 14, 15}));
  EXPECT_EQ(l.ep_index(13), 2);
  EXPECT_EQ(l.etp_index(13), 1);
  EXPECT_EQ(l.edp_group(13).ranks(), (std::vector<int>{5, 13, 21, 29}));
}

TEST(ExpertTensorParallel, BothShardsComputeTheirExpertsRowsAtHalfTheWidth) {
  auto plan = [](int etp) {
    return make_training_plan(parse_training_config(
        config({{"preset", "qwen3-30b-a3b"}, {"layers", 4}, {"global_batch", 64}}, {{"ep", 8 / etp}, {"etp", etp}},
               kGathered, 8),
        "f.json"));
  };
  const TrainingPlan one = plan(1), two = plan(2);
  const LayerRouting& lr = two.routing.at(0, 0).layers[0];
  EXPECT_EQ(lr.rows_computed(2), lr.rows_computed(3)) << "ranks 2 and 3 hold the two shards of the same experts";
  auto expert_params = [](const TrainingPlan& p) {
    return static_cast<double>(p.memory.ranks[0].at_peak[0][static_cast<std::size_t>(MemoryUse::parameters)]);
  };
  // Twice the experts per rank at half their width: the same expert parameters per rank (dense ones alike).
  EXPECT_NEAR(expert_params(two) / expert_params(one), 1.0, 0.01);
  EXPECT_EQ(two.layout.local_experts, 2 * one.layout.local_experts);
}

TEST(ExpertTensorParallel, ImpossibleMappingsAreRefusedWithTheReason) {
  const json model = {{"preset", "qwen3-30b-a3b"}, {"layers", 4}, {"global_batch", 64}};
  EXPECT_NE(refusal(config(model, {{"ep", 4}, {"etp", 2}}, {{"preset", "megatron"}})).find("all-gather dispatcher only"),
            std::string::npos);
  EXPECT_NE(refusal(config(model, {{"ep", 8}, {"etp", 3}}, kGathered)).find("do not divide into expert groups of 8 x 3"),
            std::string::npos);
  json narrow = model;
  narrow["expert_hidden"] = 100;
  EXPECT_NE(refusal(config(narrow, {{"ep", 4}, {"etp", 8}}, kGathered)).find("FFN width 100 does not divide"),
            std::string::npos);
  json offload = kGathered;
  offload["offload"] = "cpu";
  EXPECT_NE(refusal(config(model, {{"ep", 4}, {"etp", 2}}, offload)).find("offloaded experts"), std::string::npos);
  EXPECT_EQ(refusal(config(model, {{"ep", 4}, {"etp", 2}}, kGathered)), "feasible");
}
