// ModelConfig: the paper's parameter counts, derived sizes, JSON round trip and one test per validation error.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.hpp"
#include "core/model_config.hpp"

namespace moesys::core {
namespace {

using nlohmann::json;

// Billions of parameters rounded to the paper's one decimal, as an integer count of 0.1B.
long tenths_of_billion(std::int64_t params) {
  return std::lround(static_cast<double>(params) / 1e8);
}

TEST(ModelConfig, PaperParameterCounts) {
  EXPECT_EQ(tenths_of_billion(ModelConfig::paper_gpt_moe(8).total_params()), 139);
  EXPECT_EQ(tenths_of_billion(ModelConfig::paper_gpt_moe(64).total_params()), 1041);
  EXPECT_EQ(tenths_of_billion(ModelConfig::paper_gpt_moe(128).total_params()), 2072);
}

TEST(ModelConfig, PaperPerPartCounts) {
  ModelConfig m = ModelConfig::paper_gpt_moe(8);
  EXPECT_EQ(m.attention_params_per_layer(), 4LL * 4096 * 4096 + 4 * 4096);
  EXPECT_EQ(m.expert_params_per_expert(), 2LL * 4096 * 16384 + 16384 + 4096);
  EXPECT_EQ(m.moe_layers(), 12);
  EXPECT_EQ(m.dense_params(), 1015947264);  // 12 x (attention + 2 layernorms) + embeddings + final layernorm
  EXPECT_EQ(m.expert_params(), 12LL * 8 * 134238208);
  EXPECT_EQ(m.gate_params(), 12LL * 4096 * 8);
  EXPECT_EQ(m.total_params(), m.dense_params() + m.expert_params() + m.gate_params());
}

TEST(ModelConfig, MoeEveryOtherLayer) {
  ModelConfig m = ModelConfig::paper_gpt_moe(8);
  m.moe_every = 2;
  EXPECT_EQ(m.moe_layers(), 6);
  EXPECT_FALSE(m.is_moe_layer(0));
  EXPECT_TRUE(m.is_moe_layer(1));
  ModelConfig every = ModelConfig::paper_gpt_moe(8);
  EXPECT_EQ(m.dense_params() - every.dense_params(), 6 * m.expert_params_per_expert());
  EXPECT_EQ(m.expert_params(), every.expert_params() / 2);
}

TEST(ModelConfig, BytesPerParameter) {
  ModelConfig m = ModelConfig::paper_gpt_moe(8);
  EXPECT_EQ(m.optimizer_bytes_per_param(), 12);
  EXPECT_EQ(m.training_bytes_per_param(), 16);  // the paper's 16D
  m.dtype = Dtype::fp32;
  EXPECT_EQ(m.training_bytes_per_param(), 16);  // no master copy, 4 + 4 + 8
  m.dtype = Dtype::fp16;
  m.optimizer = "sgd";
  EXPECT_EQ(m.training_bytes_per_param(), 8);
}

TEST(ModelConfig, FlopsAndTokens) {
  ModelConfig m = ModelConfig::paper_gpt_moe(8);
  double h = 4096;
  EXPECT_EQ(m.tokens_per_micro_batch(), 8 * 1024);
  EXPECT_DOUBLE_EQ(m.attention_flops_per_token_per_layer(), 8 * h * h + 4 * 1024 * h);
  EXPECT_DOUBLE_EQ(m.expert_flops_per_token(), 16 * h * h);
  EXPECT_DOUBLE_EQ(m.ffn_flops_per_token_per_layer(0), 2 * h * 8 + 2 * 16 * h * h);
  EXPECT_DOUBLE_EQ(m.forward_flops_per_token(),
                   12 * (m.attention_flops_per_token_per_layer() + m.ffn_flops_per_token_per_layer(0)) + 2 * h * 50304);
}

TEST(ModelConfig, ExpertCapacity) {
  ModelConfig m = ModelConfig::paper_gpt_moe(8);
  EXPECT_EQ(m.expert_capacity(1024), 308);  // ceil(1.2 * 1024 * 2 / 8) = ceil(307.2)
  m.capacity_factor = 1.0;
  EXPECT_EQ(m.expert_capacity(1024), 256);
  EXPECT_EQ(gshard_capacity(256, 1, 1, 1.25), 320);  // exact products do not round up
}

const json kModel = {{"name", "tiny"},  {"layers", 4},         {"hidden", 64},     {"heads", 4},
                     {"vocab", 1000},   {"seq_len", 128},      {"micro_batch", 2}, {"global_batch", 8},
                     {"experts", 4},    {"top_k", 2},          {"moe_every", 2},   {"capacity_factor", 1.5},
                     {"dtype", "bf16"}, {"optimizer", "adamw"}};

TEST(ModelConfig, ParsesAndRoundTrips) {
  ModelConfig m = parse_model_config(kModel, "x.json", "model");
  EXPECT_EQ(m.name, "tiny");
  EXPECT_EQ(m.ffn_multiplier, 4);  // default
  EXPECT_EQ(m.moe_layers(), 2);
  EXPECT_EQ(m.dtype, Dtype::bf16);
  EXPECT_EQ(parse_model_config(to_json(m), "x.json", "model"), m);
  ModelConfig paper = ModelConfig::paper_gpt_moe(64);
  EXPECT_EQ(parse_model_config(to_json(paper), "", ""), paper);
}

TEST(ModelConfig, DefaultsForOptionalKeys) {
  json j = kModel;
  for (const char* k : {"moe_every", "capacity_factor", "dtype", "optimizer"}) j.erase(k);
  ModelConfig m = parse_model_config(j, "x.json", "model");
  EXPECT_EQ(m.moe_every, 1);
  EXPECT_DOUBLE_EQ(m.capacity_factor, 1.2);
  EXPECT_EQ(m.dtype, Dtype::fp16);
  EXPECT_EQ(m.optimizer, "adamw");
}

/// Parses `j` and expects a one-line ConfigError at `path` whose message contains `text`.
void expect_error(const json& j, const std::string& path, const std::string& text) {
  try {
    parse_model_config(j, "experiments/x.json", "model");
    FAIL() << "no error for " << path;
  } catch (const ConfigError& e) {
    std::string what = e.what();
    EXPECT_EQ(e.json_path(), path);
    EXPECT_NE(what.find("experiments/x.json: " + path + ": "), std::string::npos) << what;
    EXPECT_NE(what.find(text), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
}

json with(const std::string& key, const json& value) {
  json j = kModel;
  j[key] = value;
  return j;
}

TEST(ModelConfigErrors, UnknownKey) {
  expect_error(with("hiden", 64), "model.hiden", "unknown key");
}
TEST(ModelConfigErrors, WrongType) {
  expect_error(with("layers", "4"), "model.layers", "expected an integer in [1, 4096]");
}
TEST(ModelConfigErrors, FloatForInteger) {
  expect_error(with("hidden", 64.5), "model.hidden", "got 64.5");
}
TEST(ModelConfigErrors, Missing) {
  json j = kModel;
  j.erase("vocab");
  expect_error(j, "model.vocab", "missing");
}
TEST(ModelConfigErrors, Zero) {
  expect_error(with("layers", 0), "model.layers", "expected an integer in [1, 4096], got 0");
}
TEST(ModelConfigErrors, Negative) {
  expect_error(with("micro_batch", -2), "model.micro_batch", "expected an integer in [1, 65536], got -2");
}
TEST(ModelConfigErrors, TooLarge) {
  expect_error(with("vocab", 1LL << 40), "model.vocab", "expected an integer in [1, 16777216]");
}
// Regression (issue 13): a product of in-range fields overflowed the int FFN width and the int64 parameter count.
TEST(ModelConfigErrors, FfnMultiplierOverflow) {
  expect_error(with("ffn_multiplier", 2147483647), "model.ffn_multiplier", "expected an integer in [1, 64]");
}
TEST(ModelConfigErrors, ParameterCountBeyondLimit) {
  json j = kModel;
  j["hidden"] = 131072;
  j["heads"] = 1;
  j["ffn_multiplier"] = 64;
  j["experts"] = 16384;
  j["layers"] = 4096;
  expect_error(j, "model", "parameters; at most 1e15 are supported");
}
TEST(ModelConfigErrors, CapacityFactorBeyondRange) {
  expect_error(with("capacity_factor", 1e300), "model.capacity_factor", "expected a number in [0.001, 1000]");
}
TEST(ModelConfigErrors, TopKAboveExperts) {
  expect_error(with("top_k", 5), "model.top_k", "at most experts (4)");
}
TEST(ModelConfigErrors, HeadsNotDividingHidden) {
  json j = with("heads", 60);
  j["hidden"] = 4096;
  try {
    parse_model_config(j, "experiments/x.json", "model");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "experiments/x.json: model.heads: expected a divisor of hidden (4096), got 60");
  }
}
TEST(ModelConfigErrors, CapacityFactorZero) {
  expect_error(with("capacity_factor", 0), "model.capacity_factor", "expected a number in [0.001, 1000]");
}
TEST(ModelConfigErrors, CapacityFactorNegative) {
  expect_error(with("capacity_factor", -1.2), "model.capacity_factor", "expected a number in [0.001, 1000]");
}
TEST(ModelConfigErrors, CapacityFactorString) {
  expect_error(with("capacity_factor", "1.2"), "model.capacity_factor", "expected a number in [0.001, 1000]");
}
TEST(ModelConfigErrors, UnknownDtype) {
  expect_error(with("dtype", "fp64"), "model.dtype", "fp16");
}
TEST(ModelConfigErrors, UnknownOptimizer) {
  expect_error(with("optimizer", "adam"), "model.optimizer", "adamw, sgd");
}
TEST(ModelConfigErrors, EmptyName) {
  expect_error(with("name", ""), "model.name", "non-empty");
}
TEST(ModelConfigErrors, MoeEveryAboveLayers) {
  expect_error(with("moe_every", 5), "model.moe_every", "at most layers");
}
TEST(ModelConfigErrors, GlobalBatchNotMultiple) {
  expect_error(with("global_batch", 7), "model.global_batch", "multiple of micro_batch (2)");
}
TEST(ModelConfigErrors, NotAnObject) {
  expect_error(json::array({1, 2}), "model", "expected an object");
}

}  // namespace
}  // namespace moesys::core
