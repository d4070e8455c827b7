// The model description's fields for today's MoE architectures: hand-counted parameters and FLOPs of small
// shapes, the JSON round trip, and one test per validation error of the new fields.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "core/error.hpp"
#include "core/model_config.hpp"
#include "core/model_zoo.hpp"

namespace moesys::core {
namespace {

using nlohmann::json;

// hidden 64, 8 heads of 16 (GQA: 2 KV heads), 4 layers (1 dense first), 8 experts of width 32, 1 shared, SwiGLU,
// RMSNorm, no biases, rotary positions, untied output.
json modern() {
  return json{{"name", "modern"},        {"layers", 4},        {"hidden", 64},
              {"heads", 8},              {"attention", {{"kind", "gqa"}, {"kv_heads", 2}}},
              {"ffn_hidden", 128},       {"expert_hidden", 32}, {"activation", "swiglu"},
              {"first_dense_layers", 1}, {"experts", 8},        {"shared_experts", 1},
              {"top_k", 2},              {"vocab", 100},        {"norm", "rmsnorm"},
              {"biases", false},         {"positions", "rope"}, {"tied_embeddings", false},
              {"seq_len", 32},           {"micro_batch", 1},    {"global_batch", 4}};
}

TEST(ModelArchitectures, HandCountedParameters) {
  const ModelConfig m = parse_model_config(modern(), "m.json", "model");
  EXPECT_EQ(m.moe_layers(), 3);
  EXPECT_FALSE(m.is_moe_layer(0));
  EXPECT_TRUE(m.is_moe_layer(1));
  EXPECT_EQ(m.kv_head_count(), 2);
  EXPECT_EQ(m.head_dim(), 8);
  // Q 64x64, K and V 64x16 each, output 64x64.
  EXPECT_EQ(m.attention_params_per_layer(), 64 * 64 + 2 * 64 * 16 + 64 * 64);
  EXPECT_EQ(m.layernorm_params_per_layer(), 2 * 64);                  // RMSNorm: gains only
  EXPECT_EQ(m.expert_params_per_expert(), 64 * 64 + 32 * 64);         // gate and up 64x32 each, down 32x64
  EXPECT_EQ(m.ffn_params(128), 64 * 256 + 128 * 64);                  // the dense FFN
  EXPECT_EQ(m.gate_params_per_layer(), 64 * 8);                       // softmax router, no bias
  EXPECT_EQ(m.embedding_params(), 100 * 64);                          // no position table
  EXPECT_EQ(m.output_params(), 100 * 64);
  const std::int64_t per_layer = m.attention_params_per_layer() + m.layernorm_params_per_layer();
  EXPECT_EQ(m.dense_params(), 4 * per_layer + m.ffn_params(128) + 3 * m.expert_params_per_expert() + 2 * 100 * 64 + 64);
  EXPECT_EQ(m.expert_params(), 3 * 8 * m.expert_params_per_expert());
  EXPECT_EQ(m.active_params(), m.dense_params() + m.gate_params() + 3 * 2 * m.expert_params_per_expert());
}

TEST(ModelArchitectures, HandCountedFlops) {
  const ModelConfig m = parse_model_config(modern(), "m.json", "model");
  // Attention: 2 per weight + scores and weighted sum over 32 keys with 64-wide Q and 16-wide K/V.
  EXPECT_DOUBLE_EQ(m.attention_flops_per_token_per_layer(),
                   2.0 * static_cast<double>(m.attention_params_per_layer()) + 2.0 * 32 * 64 + 2.0 * 32 * 16);
  EXPECT_DOUBLE_EQ(m.expert_flops_per_token(), 2.0 * 3 * 64 * 32);
  EXPECT_DOUBLE_EQ(m.ffn_flops_per_token_per_layer(0), 2.0 * 3 * 64 * 128);
  EXPECT_DOUBLE_EQ(m.ffn_flops_per_token_per_layer(1), 2.0 * 64 * 8 + 3 * m.expert_flops_per_token());
}

TEST(ModelArchitectures, SigmoidGateAndMtpAndMla) {
  json j = modern();
  j["gate"] = "sigmoid";
  j["expert_groups"] = 4;
  j["max_groups_per_token"] = 2;
  j["mtp_layers"] = 1;
  j["attention"] = {{"kind", "mla"},          {"q_lora_rank", 16},    {"kv_lora_rank", 8},
                    {"qk_nope_head_dim", 8}, {"qk_rope_head_dim", 4}, {"v_head_dim", 8}};
  const ModelConfig m = parse_model_config(j, "m.json", "model");
  EXPECT_EQ(m.gate_params_per_layer(), 64 * 8 + 8);  // the selection bias
  // q: 64x16 + norm 16 + 16 x 8*(8+4); kv: 64x(8+4) + norm 8 + 8 x 8*(8+8); out: 8*8 x 64.
  EXPECT_EQ(m.attention_params_per_layer(), 64 * 16 + 16 + 16 * 96 + 64 * 12 + 8 + 8 * 128 + 64 * 64);
  const std::int64_t block = m.attention_params_per_layer() + m.layernorm_params_per_layer() +
                             9 * m.expert_params_per_expert() + m.gate_params_per_layer();
  EXPECT_EQ(m.mtp_params(), 3 * 64 + 2 * 64 * 64 + block);
  EXPECT_EQ(m.total_params(), m.main_params() + m.mtp_params());

  // The training program's view: the module's block is a fifth layer, an MoE layer after the main ones, and the
  // counts stay those of the declared model.
  const ModelConfig v = m.with_mtp_blocks();
  EXPECT_EQ(v.layers, 5);
  EXPECT_EQ(v.main_layers(), 4);
  EXPECT_EQ(v.mtp_layers, 0);
  EXPECT_TRUE(v.is_mtp_layer(4) && v.is_moe_layer(4) && !v.is_mtp_layer(3));
  EXPECT_EQ(v.moe_layers(), m.moe_layers() + 1);
  EXPECT_EQ(v.moe_blocks(), m.moe_blocks());
  EXPECT_EQ(v.total_params(), m.total_params());
  // FLOPs: the module adds its block, its projection (2h -> h) and its own logits to the main model's.
  ModelConfig main_only = m;
  main_only.mtp_layers = 0;
  EXPECT_DOUBLE_EQ(m.forward_flops_per_token() - main_only.forward_flops_per_token(),
                   m.attention_flops_per_token_per_layer() + m.ffn_flops_per_token_per_layer(1) +
                       2.0 * (2 * 64) * 64 + m.logits_flops_per_token());
  EXPECT_DOUBLE_EQ(v.forward_flops_per_token(), m.forward_flops_per_token());
}

TEST(ModelArchitectures, RoundTripsEveryZooModel) {
  for (const ZooEntry& e : zoo_entries()) {
    const std::string name = e.name == "gpt-moe-<E>e" ? "gpt-moe-16e" : e.name;
    const ModelConfig m = parse_model_config(*zoo_model_json(name), e.path, "model");
    EXPECT_EQ(parse_model_config(to_json(m), "", "model"), m) << name;
  }
}

TEST(ModelArchitectures, PaperModelWritesNoNewKeys) {
  const json j = to_json(ModelConfig::paper_gpt_moe(8));
  for (const char* key : {"attention", "activation", "norm", "biases", "positions", "expert_hidden", "ffn_hidden"})
    EXPECT_FALSE(j.contains(key)) << key;
}

void expect_error(const json& j, const std::string& path, const std::string& text) {
  try {
    parse_model_config(j, "m.json", "model");
    FAIL() << "no error for " << path;
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_EQ(e.json_path(), path) << what;
    EXPECT_NE(what.find(text), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
}
json with(const std::string& key, const json& value) {
  json j = modern();
  j[key] = value;
  return j;
}

TEST(ModelArchitecturesErrors, WidthGivenTwice) {
  expect_error(with("ffn_multiplier", 4), "model.ffn_hidden", "either as ffn_hidden (elements) or as ffn_multiplier");
}
TEST(ModelArchitecturesErrors, KvHeadsNotDividingHeads) {
  expect_error(with("attention", {{"kind", "gqa"}, {"kv_heads", 3}}), "model.attention.kv_heads",
               "expected a divisor of heads (8), got 3");
}
TEST(ModelArchitecturesErrors, GqaWithoutKvHeads) {
  expect_error(with("attention", {{"kind", "gqa"}}), "model.attention.kv_heads", "missing required key");
}
TEST(ModelArchitecturesErrors, UnknownAttentionKind) {
  expect_error(with("attention", {{"kind", "linear"}}), "model.attention.kind", "expected one of mha, gqa, mla");
}
TEST(ModelArchitecturesErrors, UnknownAttentionKey) {
  expect_error(with("attention", {{"kind", "mha"}, {"kv_heads", 2}}), "model.attention.kv_heads", "unknown key");
}
TEST(ModelArchitecturesErrors, MlaMissingRank) {
  expect_error(with("attention", {{"kind", "mla"}, {"kv_lora_rank", 8}}), "model.attention.qk_nope_head_dim",
               "missing required key");
}
TEST(ModelArchitecturesErrors, HeadDimNeededWhenHeadsDoNotDivide) {
  json j = with("heads", 6);
  j["attention"] = {{"kind", "mha"}};
  expect_error(j, "model.attention.head_dim", "the head width must be given");
}
TEST(ModelArchitecturesErrors, UnknownActivation) {
  expect_error(with("activation", "relu"), "model.activation", "expected one of gelu, swiglu");
}
TEST(ModelArchitecturesErrors, UnknownNorm) {
  expect_error(with("norm", "batchnorm"), "model.norm", "expected one of layernorm, rmsnorm");
}
TEST(ModelArchitecturesErrors, BiasesNotABoolean) {
  expect_error(with("biases", 0), "model.biases", "expected true or false");
}
TEST(ModelArchitecturesErrors, FirstDenseLayersCoverTheModel) {
  expect_error(with("first_dense_layers", 4), "model.first_dense_layers", "expected fewer than layers (4)");
}
TEST(ModelArchitecturesErrors, ExpertGroupsNotDividingExperts) {
  expect_error(with("expert_groups", 3), "model.expert_groups", "expected a divisor of experts (8)");
}
TEST(ModelArchitecturesErrors, MoreGroupsPerTokenThanGroups) {
  json j = with("expert_groups", 2);
  j["max_groups_per_token"] = 3;
  expect_error(j, "model.max_groups_per_token", "expected at most expert_groups (2)");
}
TEST(ModelArchitecturesErrors, TopKBeyondTheAllowedGroups) {
  json j = with("expert_groups", 4);
  j["max_groups_per_token"] = 1;
  j["top_k"] = 3;
  expect_error(j, "model.top_k", "at most the experts of max_groups_per_token groups (2)");
}
TEST(ModelArchitecturesErrors, TooManySharedExperts) {
  expect_error(with("shared_experts", 65), "model.shared_experts", "expected an integer in [0, 64]");
}

}  // namespace
}  // namespace moesys::core
