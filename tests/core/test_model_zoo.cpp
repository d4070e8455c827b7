// The model zoo: every built-in file parses as a model, its derived parameter counts match the published figures it
// cites (totals within 1%; active counts within 1% or one unit of the last published digit), and the paper's family file
// is the paper's model.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "core/model_config.hpp"
#include "core/model_zoo.hpp"

namespace moesys::core {
namespace {

using nlohmann::json;

double derived(const ModelConfig& m, const json& figure) {
  const std::string what = figure.at("what");
  if (what == "total_params") return static_cast<double>(m.total_params());
  if (what == "main_params") return static_cast<double>(m.main_params());
  if (what == "active_params") {
    const double input_table = static_cast<double>(std::int64_t{m.vocab} * m.hidden);
    return static_cast<double>(m.active_params()) - (figure.at("counts_input_embedding").get<bool>() ? 0 : input_table);
  }
  ADD_FAILURE() << "unknown published figure " << what;
  return 0;
}

TEST(ModelZoo, HoldsTheNamedModels) {
  for (const char* name : {"gpt-moe-64e", "mixtral-8x7b", "mixtral-8x22b", "deepseek-v3", "qwen3-30b-a3b",
                           "qwen3-235b-a22b", "gpt-oss-120b"})
    EXPECT_TRUE(zoo_model_json(name).has_value()) << name;
  EXPECT_FALSE(zoo_model_json("mixtral-8x8b").has_value());
  EXPECT_FALSE(zoo_model_json("gpt-moe-0e").has_value());
}

TEST(ModelZoo, BuiltInFilesAreTheFilesOfTheModelsFolder) {
  for (const ZooFile& f : zoo_files()) {
    std::ifstream in(std::string(MOESYS_SOURCE_DIR) + "/" + f.path);
    ASSERT_TRUE(in) << f.path;
    std::stringstream text;
    text << in.rdbuf();
    EXPECT_EQ(text.str(), f.text) << f.path << " changed since the build; re-run cmake";
  }
}

TEST(ModelZoo, ParameterCountsMatchThePublishedFigures) {
  int checked = 0;
  for (const ZooEntry& e : zoo_entries()) {
    ASSERT_TRUE(e.document.contains("sources")) << e.path;
    for (const json& figure : e.document.at("published")) {
      const std::string name = figure.contains("experts")
                                   ? "gpt-moe-" + std::to_string(figure["experts"].get<int>()) + "e"
                                   : e.name;
      const ModelConfig m = parse_model_config(*zoo_model_json(name), e.path, "model");
      const double value = figure.at("value"), got = derived(m, figure);
      // A figure published with few digits may be rounded or cut (Qwen3-30B-A3B's 3.35B reads "3.3B").
      const double tolerance = std::max(0.01 * value, figure.at("rounded_to").get<double>());
      std::printf("%-16s %-14s derived %9.3fB  published %9.3fB\n", name.c_str(),
                  figure["what"].get<std::string>().c_str(), got / 1e9, value / 1e9);
      EXPECT_NEAR(got, value, tolerance) << name << " " << figure["what"] << ": derived " << got / 1e9
                                         << "B, published " << value / 1e9 << "B (" << figure["source"] << ")";
      if (figure.at("what") != "active_params") {
        EXPECT_NEAR(got, value, 0.01 * value) << name;
      }
      ++checked;
    }
  }
  EXPECT_GE(checked, 14);
}

TEST(ModelZoo, PaperFamilyFileIsThePaperModel) {
  for (int experts : {8, 64, 128})
    EXPECT_EQ(parse_model_config(*zoo_model_json("gpt-moe-" + std::to_string(experts) + "e"), "", "model"),
              ModelConfig::paper_gpt_moe(experts));
}

TEST(ModelZoo, DeepSeekV3Shape) {
  const ModelConfig m = parse_model_config(*zoo_model_json("deepseek-v3"), "", "model");
  EXPECT_EQ(m.moe_layers(), 58);
  EXPECT_FALSE(m.is_moe_layer(2));
  EXPECT_TRUE(m.is_moe_layer(3));
  EXPECT_EQ(m.q_width(), 128 * 192);
  EXPECT_EQ(m.kv_width(), 128 * 128);
  // One routed expert: three 7168 x 2048 matrices; the attention of one layer about 187M parameters.
  EXPECT_EQ(m.expert_params_per_expert(), 3LL * 7168 * 2048);
  EXPECT_NEAR(static_cast<double>(m.attention_params_per_layer()), 187.1e6, 0.1e6);
}

TEST(ModelZoo, TrainingFlopsPerTokenOfDeepSeekV3) {
  // Forward FLOPs are 2 per active weight of a GEMM plus attention over the sequence, so training FLOPs per token
  // (3x forward) land between 6 x active parameters without the input table and that plus the attention scores.
  // The main model (what its MTP module adds: ModelArchitectures.SigmoidGateAndMtpAndMla).
  ModelConfig m = parse_model_config(*zoo_model_json("deepseek-v3"), "", "model");
  m.mtp_layers = 0;
  const double gemm_weights = static_cast<double>(m.active_params() - std::int64_t{m.vocab} * m.hidden);
  const double scores = 61.0 * 2.0 * m.seq_len * static_cast<double>(m.q_width() + m.kv_width());
  EXPECT_NEAR(m.training_flops_per_token(), 3.0 * (2.0 * gemm_weights + scores), 0.002 * m.training_flops_per_token());
}

}  // namespace
}  // namespace moesys::core
