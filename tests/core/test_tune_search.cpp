// The search of `moesys tune`: the space's parse errors, points applied to a config, the grid's order, coordinate
// descent on a known function (it finds the optimum with fewer evaluations than the grid, never repeats a point and
// skips infeasible points), and the throughput-memory Pareto front.
#include <gtest/gtest.h>

#include <set>

#include "core/error.hpp"
#include "studies/tune_search.hpp"

using namespace moesys;
using namespace moesys::studies;
using nlohmann::json;

namespace {

std::string error_of(const json& spec) {
  try {
    parse_tune_space(spec, "t.json");
  } catch (const core::ConfigError& e) {
    return e.what();
  }
  return "accepted";
}

TEST(TuneSearch, MalformedSpacesAreConfigErrors) {
  const json base = {{"policy", {{"preset", "deepspeed"}}}};
  EXPECT_NE(error_of({{"space", {{"a", {1}}}}}).find("base: expected"), std::string::npos);
  EXPECT_NE(error_of({{"base", base}, {"space", json::object()}}).find("space: expected an object of at least one"),
            std::string::npos);
  EXPECT_NE(error_of({{"base", base}, {"space", {{"policy.dense", json::array()}}}}).find("space.policy.dense: expected a non-empty"),
            std::string::npos);
  EXPECT_NE(error_of({{"base", base}, {"space", {{"policy.dense", {"ddp", "ddp"}}}}}).find("listed twice"), std::string::npos);
  EXPECT_NE(error_of({{"base", base}, {"space", {{"policy.", {1}}}}}).find("expected a dotted path"), std::string::npos);
  EXPECT_NE(error_of({{"base", base}, {"space", {{"po licy", {1}}}}}).find("expected a dotted path"), std::string::npos);
}

TEST(TuneSearch, APointSetsEveryDimensionAtItsPath) {
  json space = json::object();
  space["policy.overlap_chunks"] = {1, 4};
  space["parallel.ep"] = {8, 16};
  space["policy.replicas"] = json::array({json{{"kind", "hot"}}});
  json spec = json::object();
  spec["base"] = {{"policy", {{"preset", "deepspeed"}}}, {"steps", 2}};
  spec["space"] = space;
  const TuneSpace s = parse_tune_space(spec, "t.json");
  EXPECT_EQ(s.grid_size(), 4u);
  // Dimensions come in the object's (sorted) key order: parallel.ep, policy.overlap_chunks, policy.replicas.
  const json c = s.config_at({1, 0, 0});
  EXPECT_EQ(c["policy"]["preset"], "deepspeed");
  EXPECT_EQ(c["policy"]["overlap_chunks"], 1);
  EXPECT_EQ(c["parallel"]["ep"], 16);
  EXPECT_EQ(c["policy"]["replicas"]["kind"], "hot");
  EXPECT_EQ(c["steps"], 2);
  EXPECT_EQ(s.describe({1, 0, 0}), "ep=16 overlap_chunks=1 replicas={\"kind\":\"hot\"}");
}

/// A space of 3 dimensions of 5 values; score = sum of per-dimension terms peaking at (3, 1, 4), point (0, 4, x)
/// infeasible.
TuneSpace five_cubed() {
  json space = json::object();
  for (const char* d : {"a.x", "a.y", "a.z"}) space[d] = {0, 1, 2, 3, 4};
  return parse_tune_space({{"base", json::object()}, {"space", space}}, "t.json");
}

std::vector<TunePoint> evaluate(const std::vector<std::vector<std::size_t>>& batch, std::size_t& calls) {
  std::vector<TunePoint> out;
  for (const auto& p : batch) {
    ++calls;
    TunePoint t;
    t.point = p;
    t.feasible = !(p[0] == 0 && p[1] == 4);
    const auto term = [](std::size_t v, std::size_t peak) { return 10.0 - std::abs(static_cast<double>(v) - peak); };
    t.tokens_per_s = term(p[0], 3) + term(p[1], 1) + term(p[2], 4);
    t.peak_hbm_gib = static_cast<double>(p[0] + p[1] + p[2]);
    if (!t.feasible) t.error = "does not fit";
    out.push_back(t);
  }
  return out;
}

TEST(TuneSearch, DescentFindsTheGridsBestWithFewerSimulationsAndNoRepeats) {
  const TuneSpace s = five_cubed();
  std::size_t grid_calls = 0, descent_calls = 0;
  const auto grid = tune_search(s, "grid", [&](const auto& b) { return evaluate(b, grid_calls); });
  const auto descent = tune_search(s, "descent", [&](const auto& b) { return evaluate(b, descent_calls); });
  EXPECT_EQ(grid_calls, 125u);
  EXPECT_EQ(grid.front().point, (std::vector<std::size_t>{0, 0, 0}));
  EXPECT_EQ(grid[1].point, (std::vector<std::size_t>{0, 0, 1})) << "the last dimension runs fastest";
  ASSERT_NE(best_point(grid), nullptr);
  ASSERT_NE(best_point(descent), nullptr);
  EXPECT_EQ(best_point(descent)->point, best_point(grid)->point);
  EXPECT_EQ(best_point(grid)->point, (std::vector<std::size_t>{3, 1, 4}));
  EXPECT_LT(descent_calls, grid_calls / 4);
  std::set<std::vector<std::size_t>> seen;
  for (const TunePoint& p : descent) EXPECT_TRUE(seen.insert(p.point).second) << "a point was simulated twice";
}

TEST(TuneSearch, ParetoFrontKeepsOnlyUnbeatenFeasiblePoints) {
  std::vector<TunePoint> pts(4);
  pts[0] = {{0}, true, 100, 50, 1, ""};
  pts[1] = {{1}, true, 120, 60, 1, ""};
  pts[2] = {{2}, true, 90, 70, 1, ""};    // beaten by both
  pts[3] = {{3}, false, 500, 10, 0, "x"};  // infeasible: never on the front
  const auto front = pareto_front(pts);
  ASSERT_EQ(front.size(), 2u);
  EXPECT_EQ(front[0].point, std::vector<std::size_t>{0});
  EXPECT_EQ(front[1].point, std::vector<std::size_t>{1});
  EXPECT_EQ(best_point(pts)->point, std::vector<std::size_t>{1});
}

}  // namespace
