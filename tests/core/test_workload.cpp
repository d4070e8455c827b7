// Routing workloads: exact totals, skew, determinism, multi-task loads, trace round trip, capacity, JSON errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "core/model_config.hpp"
#include "core/workload.hpp"

namespace moesys::core {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::unique_ptr<RoutingModel> make(const json& j, int ranks = 8, int experts = 16, int layers = 2,
                                   std::int64_t tokens = 4096, int top_k = 2, const std::string& file = "w.json") {
  return make_routing_model(j, file, "workload", ranks, experts, layers, tokens, top_k);
}

void expect_row_totals(const RoutingMatrix& m, std::int64_t per_rank) {
  for (int r = 0; r < m.ranks(); ++r) EXPECT_EQ(m.rank_total(r), per_rank) << "rank " << r;
}

TEST(Routing, UniformTotalsExactAndEven) {
  auto model = make({{"kind", "uniform"}}, 5, 7, 3, 1003, 2);
  for (int layer = 0; layer < 3; ++layer) {
    RoutingMatrix m = model->route(4, layer);
    expect_row_totals(m, 2006);
    for (int r = 0; r < 5; ++r) {
      for (int e = 0; e < 7; ++e) EXPECT_TRUE(m.at(r, e) == 286 || m.at(r, e) == 287);
    }
    LoadStats s = expert_load_stats(m);
    EXPECT_EQ(s.total, 5 * 2006);
    EXPECT_LE(s.max_load - s.min_load, 1);  // remainders rotate over ranks
  }
}

TEST(Routing, ZipfTotalsExact) {
  auto model = make({{"kind", "zipf"}, {"exponent", 1.2}, {"seed", 3}}, 8, 16, 2, 1000, 2);
  for (int step = 0; step < 3; ++step) expect_row_totals(model->route(step, 1), 2000);
}

TEST(Routing, ZipfSkewGrowsWithExponent) {
  double previous = 0;
  for (double s : {0.0, 0.6, 1.2, 2.0}) {
    auto model = make({{"kind", "zipf"}, {"exponent", s}, {"seed", 1}}, 16, 16, 2, 8192, 2);
    double imbalance = 0;
    for (int layer = 0; layer < 2; ++layer) imbalance += expert_load_stats(model->route(0, layer)).imbalance();
    EXPECT_GT(imbalance / 2, previous) << "exponent " << s;
    previous = imbalance / 2;
  }
  EXPECT_GT(previous, 3.0);
}

TEST(Routing, TopKExpertsAreDistinctPerToken) {
  // Exponent 3 over 4 experts gives the hottest 84% of assignments: 1.68x the tokens, more than a token can send
  // it. The excess moves to other experts, so no expert gets more than the rank's tokens and totals stay exact.
  auto model = make({{"kind", "zipf"}, {"exponent", 3.0}}, 4, 4, 1, 500, 2);
  RoutingMatrix m = model->route(0, 0);
  expect_row_totals(m, 1000);
  for (int r = 0; r < 4; ++r)
    for (int e = 0; e < 4; ++e) EXPECT_LE(m.at(r, e), 500);
  EXPECT_EQ(expert_load_stats(m).max_load, 4 * 500);
}

TEST(Routing, DeterministicForSeed) {
  json j = {{"kind", "zipf"}, {"exponent", 1.0}, {"seed", 42}};
  auto a = make(j), b = make(j);
  RoutingMatrix first = a->route(7, 1);
  a->route(0, 0);
  EXPECT_EQ(a->route(7, 1), first);  // call order does not matter
  EXPECT_EQ(b->route(7, 1), first);  // a second instance agrees
  EXPECT_NE(a->route(8, 1), first);  // steps differ
  j["seed"] = 43;
  EXPECT_NE(make(j)->route(7, 1), first);
}

TEST(Routing, DriftRotatesHotSet) {
  RoutingShape shape{4, 8, 1, 1000, 2};
  ZipfRouting half(shape, 1.5, 9, 0.5), zipf(shape, 1.5, 9);
  auto hottest = [](const std::vector<double>& p) { return std::max_element(p.begin(), p.end()) - p.begin(); };
  EXPECT_EQ(half.expert_probabilities(0, 0), zipf.expert_probabilities(0, 0));
  EXPECT_EQ(hottest(half.expert_probabilities(1, 0)), hottest(half.expert_probabilities(0, 0)));
  EXPECT_NE(hottest(half.expert_probabilities(2, 0)), hottest(half.expert_probabilities(0, 0)));
  // After E / d steps the ranking is back where it started.
  EXPECT_EQ(half.expert_probabilities(16, 0), half.expert_probabilities(0, 0));
  EXPECT_EQ(zipf.expert_probabilities(5, 0), zipf.expert_probabilities(0, 0));

  auto model = make({{"kind", "drift"}, {"exponent", 1.5}, {"drift_experts_per_step", 1}}, 4, 8, 1, 1000, 2);
  EXPECT_EQ(model->kind(), "drift");
  expect_row_totals(model->route(3, 0), 2000);
}

json four_tasks(double affinity) {
  json tasks = json::array();
  std::vector<std::pair<std::string, int>> batches = {{"a", 512}, {"b", 256}, {"c", 128}, {"d", 128}};
  for (const auto& [name, batch] : batches) tasks.push_back({{"name", name}, {"batch", batch}, {"affinity", affinity}});
  return {{"kind", "multitask"}, {"tasks", tasks}, {"seed", 5}};
}

TEST(Routing, MultitaskStaticPlacementLoadsFollowBatches) {
  auto model = make(four_tasks(1.0), 4, 8, 1, 0, 2);
  RoutingMatrix m = model->route(0, 0);
  std::int64_t batches[] = {512, 256, 128, 128};
  for (int r = 0; r < 4; ++r) EXPECT_EQ(m.rank_total(r), 2 * batches[r]);
  // Affinity 1: each task's tokens stay in its block of 8 / 4 = 2 experts.
  std::vector<std::int64_t> loads = m.expert_loads();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(loads[2 * t] + loads[2 * t + 1], 2 * batches[t]) << "task " << t;
}

TEST(Routing, MultitaskElasticPlacementEvensRanks) {
  json j = four_tasks(0.8);
  j["placement"] = {0, 0, 0, 0, 1, 1, 2, 3};  // the paper's 4/2/1/1
  auto model = make(j, 8, 8, 1, 0, 2);
  expect_row_totals(model->route(0, 0), 256);
  auto* multitask = dynamic_cast<MultitaskRouting*>(model.get());
  ASSERT_NE(multitask, nullptr);
  multitask->set_placement(MultitaskRouting::block_placement(8, 4));  // 2/2/2/2
  EXPECT_EQ(multitask->tokens_of_rank(0), 256);
  EXPECT_EQ(multitask->tokens_of_rank(7), 64);
}

TEST(Routing, MultitaskAffinityConcentratesLoad) {
  auto model = make(four_tasks(0.8), 4, 8, 1, 0, 1);
  RoutingMatrix m = model->route(0, 0);
  // Task a's rank sends 80% + 20% * 2/8 = 85% of its 512 tokens to experts 0 and 1.
  double own = static_cast<double>(m.at(0, 0) + m.at(0, 1)) / 512.0;
  EXPECT_NEAR(own, 0.85, 0.06);
}

class RoutingTraceFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("moesys-test-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

RoutingTrace sample_trace(int steps) {
  ZipfRouting zipf({3, 4, 2, 100, 2}, 1.0, 11);
  RoutingTrace t{3, 4, 2, {}};
  for (int s = 0; s < steps; ++s) t.steps.push_back({zipf.route(s, 0), zipf.route(s, 1)});
  return t;
}

TEST_F(RoutingTraceFiles, WriteReadReplayRoundTrip) {
  RoutingTrace t = sample_trace(3);
  write_routing_trace((dir_ / "trace.json").string(), t);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator{}), 1);  // no temporary left
  RoutingTrace back = read_routing_trace((dir_ / "trace.json").string());
  EXPECT_EQ(back.ranks, 3);
  EXPECT_EQ(back.layers, 2);
  ASSERT_EQ(back.steps.size(), 3u);
  EXPECT_EQ(back.steps, t.steps);

  // The trace path is relative to the workload's config file.
  auto model = make({{"kind", "trace"}, {"file", "trace.json"}}, 3, 4, 2, 100, 2, (dir_ / "exp.json").string());
  EXPECT_EQ(model->kind(), "trace");
  for (int step = 0; step < 7; ++step)
    for (int layer = 0; layer < 2; ++layer) EXPECT_EQ(model->route(step, layer), t.steps[step % 3][layer]);
}

TEST_F(RoutingTraceFiles, MismatchedShapeNamesField) {
  write_routing_trace((dir_ / "trace.json").string(), sample_trace(1));
  std::string config = (dir_ / "exp.json").string();
  std::vector<std::tuple<std::string, int, int, int>> cases = {
      {"ranks", 4, 4, 2}, {"experts", 3, 8, 2}, {"layers", 3, 4, 1}};
  for (const auto& [field, ranks, experts, layers] : cases) {
    try {
      make({{"kind", "trace"}, {"file", "trace.json"}}, ranks, experts, layers, 100, 2, config);
      FAIL() << field;
    } catch (const ConfigError& e) {
      EXPECT_EQ(e.json_path(), field);
      EXPECT_NE(std::string(e.what()).find("trace.json: " + field + ": expected"), std::string::npos) << e.what();
    }
  }
}

TEST_F(RoutingTraceFiles, MalformedTraceNamesPath) {
  json j = routing_trace_to_json(sample_trace(1));
  j["steps"][0]["layers"][1]["tokens"][2] = {1, 2, 3};
  std::string path = (dir_ / "bad.json").string();
  std::ofstream(path) << j.dump();
  try {
    read_routing_trace(path);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.json_path(), "steps[0].layers[1].tokens[2]");
  }
  std::ofstream(path) << "{not json";
  EXPECT_THROW(read_routing_trace(path), ConfigError);
}

TEST(Routing, RescaleCountsKeepsTheTotalAndTheShares) {
  std::vector<std::int64_t> row = {7, 0, 3, 3, 1};  // sum 14
  for (std::int64_t total : {0, 1, 5, 14, 100, 999983}) {
    std::vector<std::int64_t> out = rescale_counts(row, total);
    std::int64_t sum = 0;
    for (std::size_t i = 0; i < row.size(); ++i) {
      double exact = static_cast<double>(row[i]) * static_cast<double>(total) / 14.0;
      EXPECT_LE(std::abs(static_cast<double>(out[i]) - exact), 1.0) << total << " " << i;
      sum += out[i];
    }
    EXPECT_EQ(sum, total);
    EXPECT_EQ(out[1], 0);  // an expert nobody chose stays unchosen
  }
  EXPECT_EQ(rescale_counts({1, 1, 1}, 2), (std::vector<std::int64_t>{1, 1, 0}));  // ties go to the lower index
  EXPECT_EQ(rescale_counts({3, 1}, 8), (std::vector<std::int64_t>{6, 2}));
  EXPECT_THROW(rescale_counts({0, 0}, 4), std::invalid_argument);
}

TEST_F(RoutingTraceFiles, TiledTraceReplaysRowsAndLayersAtTheRunsScale) {
  RoutingTrace t = sample_trace(3);  // 3 ranks, 4 experts, 2 layers, 200 assignments per row
  write_routing_trace((dir_ / "trace.json").string(), t);
  std::string config = (dir_ / "exp.json").string();
  // 7 ranks (not a multiple of 3), 5 MoE layers, 250 tokens x top-2 = 500 assignments per rank; from step 1.
  auto model = make({{"kind", "trace"}, {"file", "trace.json"}, {"fit", "tile"}, {"first_step", 1}}, 7, 4, 5, 250,
                    2, config);
  for (int step = 0; step < 4; ++step) {
    for (int layer = 0; layer < 5; ++layer) {
      RoutingMatrix m = model->route(step, layer);
      const RoutingMatrix& recorded = t.steps[(step + 1) % 3][layer % 2];
      ASSERT_EQ(m.ranks(), 7);
      expect_row_totals(m, 500);
      for (int r = 0; r < 7; ++r)
        for (int e = 0; e < 4; ++e)
          EXPECT_LE(std::abs(static_cast<double>(m.at(r, e)) - recorded.at(r % 3, e) * 2.5), 1.0)
              << step << " " << layer << " " << r << " " << e;
    }
  }
  // At the trace's own shape, tiling is the exact replay.
  auto same = make({{"kind", "trace"}, {"file", "trace.json"}, {"fit", "tile"}}, 3, 4, 2, 100, 2, config);
  EXPECT_EQ(same->route(2, 1), t.steps[2][1]);
}

TEST_F(RoutingTraceFiles, TiledTraceRefusesWhatItCannotScale) {
  RoutingTrace t = sample_trace(2);
  for (int e = 0; e < 4; ++e) t.steps[1][0].at(2, e) = 0;  // rank 2 routed nothing in step 1, layer 0
  write_routing_trace((dir_ / "trace.json").string(), t);
  std::string config = (dir_ / "exp.json").string();
  auto expect = [&](const json& w, int experts, const std::string& path, const std::string& text) {
    try {
      make(w, 8, experts, 4, 100, 2, config);
      FAIL() << path;
    } catch (const ConfigError& e) {
      EXPECT_EQ(e.json_path(), path) << e.what();
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  json tile = {{"kind", "trace"}, {"file", "trace.json"}, {"fit", "tile"}};
  expect(tile, 8, "experts", "expected 8 (the run's experts)");
  expect(tile, 4, "steps[1].layers[0].tokens[2]", "a row with no tokens");
  EXPECT_NO_THROW(make(tile, 2, 4, 4, 100, 2, config)) << "a run of 2 ranks never replays the empty row of rank 2";
  json late = tile;
  late["first_step"] = 2;
  expect(late, 4, "workload.first_step", "it has 2");
  json odd = tile;
  odd["fit"] = "stretch";
  expect(odd, 4, "workload.fit", "exact");
}

TEST(Routing, CapacityDropsOverflow) {
  RoutingMatrix m(2, 2);
  m.at(0, 0) = 10;
  m.at(0, 1) = 2;
  m.at(1, 0) = 5;
  m.at(1, 1) = 5;
  CapacityResult c = apply_capacity(m, 4);
  EXPECT_EQ(c.kept.at(0, 0), 4);
  EXPECT_EQ(c.kept.at(0, 1), 2);
  EXPECT_EQ(c.kept.at(1, 0), 4);
  EXPECT_EQ(c.dropped.at(0, 0), 6);
  EXPECT_EQ(c.dropped.at(0, 1), 0);
  EXPECT_EQ(c.dropped.total(), 8);
  EXPECT_EQ(c.kept.total() + c.dropped.total(), m.total());
}

TEST(Routing, CapacityFromModelConfig) {
  // Uniform routing never exceeds capacity 1.0; Zipf at capacity 1.2 drops tokens of its hot experts.
  std::int64_t tokens = 1024;
  std::int64_t capacity = gshard_capacity(tokens, 2, 8, 1.0);
  EXPECT_EQ(apply_capacity(make({{"kind", "uniform"}}, 4, 8, 1, tokens, 2)->route(0, 0), capacity).dropped.total(), 0);
  auto zipf = make({{"kind", "zipf"}, {"exponent", 1.5}}, 4, 8, 1, tokens, 2);
  CapacityResult c = apply_capacity(zipf->route(0, 0), gshard_capacity(tokens, 2, 8, 1.2));
  EXPECT_GT(c.dropped.total(), 0);
  EXPECT_LE(expert_load_stats(c.kept).max_load, 4 * gshard_capacity(tokens, 2, 8, 1.2));
}

/// Builds a model from `j` and expects a one-line ConfigError at `path` containing `text`.
void expect_error(const json& j, const std::string& path, const std::string& text, int ranks = 8) {
  try {
    make(j, ranks, 16, 2, 1024, 2, "experiments/x.json");
    FAIL() << "no error for " << path;
  } catch (const ConfigError& e) {
    std::string what = e.what();
    EXPECT_EQ(e.json_path(), path);
    EXPECT_NE(what.find("experiments/x.json: " + path + ": "), std::string::npos) << what;
    EXPECT_NE(what.find(text), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
}

TEST(WorkloadErrors, UnknownKind) {
  expect_error({{"kind", "gauss"}}, "workload.kind", "uniform, zipf, drift, multitask, trace");
}
TEST(WorkloadErrors, MissingKind) {
  expect_error(json::object(), "workload.kind", "missing");
}
TEST(WorkloadErrors, UnknownKey) {
  expect_error({{"kind", "uniform"}, {"seed", 1}}, "workload.seed", "unknown key");
}
TEST(WorkloadErrors, ZipfMissingExponent) {
  expect_error({{"kind", "zipf"}}, "workload.exponent", "missing");
}
TEST(WorkloadErrors, ZipfNegativeExponent) {
  expect_error({{"kind", "zipf"}, {"exponent", -1}}, "workload.exponent", "expected a number in [0");
}
TEST(WorkloadErrors, SeedWrongType) {
  expect_error({{"kind", "zipf"}, {"exponent", 1}, {"seed", "one"}}, "workload.seed", "integer");
}
TEST(WorkloadErrors, DriftZero) {
  expect_error({{"kind", "drift"}, {"exponent", 1}, {"drift_experts_per_step", 0}}, "workload.drift_experts_per_step",
               "positive");
}
TEST(WorkloadErrors, TaskAffinityAboveOne) {
  json j = four_tasks(1.5);
  expect_error(j, "workload.tasks[0].affinity", "[0, 1]");
}
TEST(WorkloadErrors, TaskBatchZero) {
  json j = four_tasks(0.5);
  j["tasks"][2]["batch"] = 0;
  expect_error(j, "workload.tasks[2].batch", "expected an integer in [1, 1073741824], got 0");
}
TEST(WorkloadErrors, DuplicateTask) {
  json j = four_tasks(0.5);
  j["tasks"][1]["name"] = "a";
  expect_error(j, "workload.tasks[1].name", "duplicate");
}
TEST(WorkloadErrors, PlacementWrongLength) {
  json j = four_tasks(0.5);
  j["placement"] = {0, 1, 2, 3};
  expect_error(j, "workload.placement", "8 task indices");
}
TEST(WorkloadErrors, PlacementBadIndex) {
  json j = four_tasks(0.5);
  j["placement"] = {0, 1, 2, 3, 4, 0, 0, 0};
  expect_error(j, "workload.placement[4]", "[0, 4)");
}
TEST(WorkloadErrors, PlacementLeavesTaskOut) {
  json j = four_tasks(0.5);
  j["placement"] = {0, 1, 2, 0, 1, 2, 0, 1};
  expect_error(j, "workload.placement", "task \"d\" has no rank");
}
TEST(WorkloadErrors, MoreTasksThanRanks) {
  expect_error(four_tasks(0.5), "workload.tasks", "one task per rank", 2);
}
TEST(WorkloadErrors, TraceMissingFile) {
  expect_error({{"kind", "trace"}, {"file", "does-not-exist.json"}}, "workload.file", "no routing trace");
}

}  // namespace
}  // namespace moesys::core
