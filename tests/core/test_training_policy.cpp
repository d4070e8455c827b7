// Training policies: the preset registry, toggle overrides and their errors, and training-config validation.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "policies/training/policy.hpp"
#include "policies/training/training_config.hpp"

using namespace moesys;
using namespace moesys::policies::training;
using nlohmann::json;

TEST(TrainingPolicy, PresetsAreRegisteredByName) {
  for (const char* name : {"deepspeed", "moesys", "static-multitask"})
    EXPECT_EQ(preset_registry().count(name), 1u) << name;
  const TrainingPolicy ds = find_preset("deepspeed", "f.json", "policy.preset");
  EXPECT_EQ(ds.all_to_all, AllToAll::flat);
  EXPECT_EQ(ds.overlap_chunks, 1);
  EXPECT_EQ(ds.dense, DenseSharding::zero2);
  EXPECT_EQ(ds.dispatch, Dispatch::padded);
  EXPECT_FALSE(ds.grad_overlap);
  const TrainingPolicy ms = find_preset("moesys", "f.json", "policy.preset");
  EXPECT_EQ(ms.all_to_all, AllToAll::hierarchical);
  EXPECT_GT(ms.overlap_chunks, 1);
  EXPECT_EQ(ms.dense, DenseSharding::zero3);
  EXPECT_EQ(ms.prefetch, Prefetch::routed);
  EXPECT_EQ(ms.placement, Placement::elastic);
  EXPECT_EQ(find_preset("static-multitask", "", "").dense, DenseSharding::ddp);
}

TEST(TrainingPolicy, UnknownPresetListsTheKnownOnes) {
  try {
    parse_policy(json{{"preset", "tutel"}}, "f.json", "policy");
    FAIL() << "expected a ConfigError";
  } catch (const core::ConfigError& e) {
    EXPECT_EQ(e.json_path(), "policy.preset");
    EXPECT_NE(std::string(e.what()).find("unknown preset 'tutel' (known: deepspeed, megatron, moesys, static-multitask"),
              std::string::npos)
        << e.what();
  }
}

TEST(TrainingPolicy, TogglesOverrideThePreset) {
  TrainingPolicy p = parse_policy(json{{"preset", "deepspeed"}, {"all_to_all", "hierarchical"}, {"bucket_mib", 0}},
                                  "f.json", "policy");
  EXPECT_EQ(p.preset, "deepspeed");
  EXPECT_EQ(p.all_to_all, AllToAll::hierarchical);
  EXPECT_EQ(p.bucket_bytes, 0);
  EXPECT_EQ(p.dense, DenseSharding::zero2);  // untouched toggles keep the preset's values
  EXPECT_EQ(describe(p), "deepspeed+all_to_all=hierarchical+bucket_mib=0");
  EXPECT_EQ(describe(find_preset("moesys", "", "")), "moesys");
}

TEST(TrainingPolicy, DispatcherIsWrittenOnlyWhenNotTheDefault) {
  const TrainingPolicy gathered = parse_policy(json{{"preset", "deepspeed"}, {"dispatcher", "all_gather"}}, "f.json", "policy");
  EXPECT_EQ(gathered.dispatcher, Dispatcher::all_gather);
  EXPECT_EQ(describe(gathered), "deepspeed+dispatcher=all_gather");
  EXPECT_EQ(to_json(gathered).at("dispatcher"), "all_gather");
  EXPECT_EQ(parse_policy(to_json(gathered), "f.json", "policy"), gathered);  // results read back the same
  // Results written before the toggle existed keep their bytes.
  EXPECT_FALSE(to_json(find_preset("deepspeed", "", "")).contains("dispatcher"));
}

TEST(TrainingPolicy, BadTogglesNameTheirPath) {
  auto path_of = [](const json& j) {
    try {
      parse_policy(j, "f.json", "policy");
    } catch (const core::ConfigError& e) {
      return e.json_path();
    }
    return std::string("no error");
  };
  EXPECT_EQ(path_of({{"all_to_all", "ring"}}), "policy.all_to_all");
  EXPECT_EQ(path_of({{"overlap_chunks", 0}}), "policy.overlap_chunks");
  EXPECT_EQ(path_of({{"grad_overlap", "yes"}}), "policy.grad_overlap");
  EXPECT_EQ(path_of({{"cache", {{"decay_beta", 2}}}}), "policy.cache.decay_beta");
  EXPECT_EQ(path_of({{"fusion", 1}}), "policy.fusion");
  EXPECT_EQ(path_of({{"dispatcher", "deep_ep"}}), "policy.dispatcher");
}

TEST(TrainingConfig, ModelPresetFollowsThePaperFamily) {
  TrainingConfig c = parse_training_config(
      json{{"model", {{"preset", "gpt-moe"}, {"experts", 64}}}, {"cluster", {{"gpus", 64}}}}, "f.json");
  EXPECT_EQ(c.model.total_params(), core::ModelConfig::paper_gpt_moe(64).total_params());
  EXPECT_EQ(c.gpus, 64);
  EXPECT_EQ(c.cluster.nodes, 8);
  EXPECT_EQ(c.expert_parallel, 64);
  EXPECT_EQ(c.policy.preset, "moesys");
}

TEST(TrainingConfig, MultitaskBatchIsTheSumOfTaskSequences) {
  json j = {{"model", {{"preset", "gpt-moe"}, {"experts", 8}}},
            {"workload",
             {{"kind", "multitask"},
              {"tasks",
               {{{"name", "a"}, {"sequences", 512}},
                {{"name", "b"}, {"sequences", 256}},
                {{"name", "c"}, {"sequences", 128}},
                {{"name", "d"}, {"sequences", 128}}}}}},
            {"cluster", {{"gpus", 8}}}};
  TrainingConfig c = parse_training_config(j, "f.json");
  EXPECT_TRUE(c.multitask());
  EXPECT_EQ(c.model.global_batch, 1024);
}

TEST(TrainingConfig, ErrorsNameTheField) {
  auto path_of = [](const json& j) {
    try {
      parse_training_config(j, "f.json");
    } catch (const core::ConfigError& e) {
      return e.json_path();
    }
    return std::string("no error");
  };
  const json model = {{"preset", "gpt-moe"}, {"experts", 8}};
  EXPECT_EQ(path_of({{"cluster", {{"gpus", 8}}}}), "model");
  EXPECT_EQ(path_of({{"model", model}, {"cluster", {{"gpus", 12}}}}), "cluster.gpus");
  EXPECT_EQ(path_of({{"model", model}, {"workload", {{"kind", "zipfian"}}}}), "workload.kind");
  EXPECT_EQ(path_of({{"model", model}, {"steps", 0}}), "steps");
  EXPECT_EQ(path_of({{"model", model}, {"optimiser", "adam"}}), "optimiser");
  EXPECT_EQ(path_of({{"model", {{"preset", "gpt-moe"}, {"experts", 8}, {"hidden", 0}}}}), "model.hidden");
}
