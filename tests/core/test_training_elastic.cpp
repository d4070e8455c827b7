// Elastic multi-task placement, the LFU expert cache, and the routing plan's capacity and padding.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "policies/training/elastic_placement.hpp"
#include "policies/training/layout.hpp"
#include "policies/training/lfu_cache.hpp"
#include "policies/training/routing_plan.hpp"

using namespace moesys;
using namespace moesys::policies::training;
using nlohmann::json;

TEST(ElasticPlacement, FollowsTheLoad) {
  // The paper's example: batches 512/256/128/128 on 8 GPUs go 4/2/1/1.
  EXPECT_EQ(elastic_placement({512, 256, 128, 128}, 8).describe(), "4/2/1/1");
  EXPECT_EQ(elastic_placement({512, 256, 128, 128}, 16).describe(), "8/4/2/2");  // scale up
  // Scale down: the two light tasks share a GPU and the heavy one is split.
  TaskPlacement down = elastic_placement({512, 256, 128, 128}, 4);
  EXPECT_EQ(down.describe(), "2/1/1+1");
  EXPECT_EQ(down.ranks_of_task, (std::vector<int>{2, 1, 1, 1}));
  ASSERT_EQ(down.slots.size(), 5u);
  EXPECT_EQ(down.slots.back().rank, 3);
  // Equal loads stay one task per GPU.
  EXPECT_EQ(elastic_placement({100, 100, 100, 100}, 4).describe(), "1/1/1/1");
}

TEST(ElasticPlacement, StaticIsContiguousBlocks) {
  EXPECT_EQ(static_placement(4, 4).describe(), "1/1/1/1");
  EXPECT_EQ(static_placement(8, 4).describe(), "2/2/2/2");
  EXPECT_THROW(static_placement(2, 4), std::invalid_argument);
}

TEST(LfuCache, AdmitsUntilFullThenKeepsTheFrequent) {
  LfuCache cache(2, CacheSettings{2, 0.5, 2, 0});
  EXPECT_FALSE(cache.access(1).hit);  // cold misses fill the free entries
  EXPECT_TRUE(cache.access(1).hit);
  EXPECT_TRUE(cache.access(2).admitted);
  // A newcomer below the hit threshold does not displace anyone.
  LfuCache::Access a = cache.access(3);
  EXPECT_FALSE(a.hit);
  EXPECT_FALSE(a.admitted);
  // At the threshold and above the least-used entry (2, one hit), it takes 2's place.
  a = cache.access(3);
  EXPECT_TRUE(a.admitted);
  ASSERT_TRUE(a.evicted.has_value());
  EXPECT_EQ(*a.evicted, 2);
  EXPECT_TRUE(cache.contains(1));
  EXPECT_TRUE(cache.contains(3));
  EXPECT_DOUBLE_EQ(cache.hits(1), 2);
}

TEST(LfuCache, CountsDecayEveryKSteps) {
  LfuCache cache(1, CacheSettings{1, 0.5, 2, 0});
  for (int i = 0; i < 4; ++i) cache.access(7);
  cache.end_step();
  EXPECT_DOUBLE_EQ(cache.hits(7), 4);  // not yet: every second step
  cache.end_step();
  EXPECT_DOUBLE_EQ(cache.hits(7), 2);
}

namespace {
TrainingConfig small_config(const json& policy, const json& workload = {{"kind", "uniform"}}) {
  json j = {{"model", {{"preset", "gpt-moe"}, {"experts", 8}, {"layers", 2}}},
            {"cluster", {{"gpus", 8}}},
            {"policy", policy},
            {"workload", workload},
            {"steps", 1}};
  return parse_training_config(j, "f.json");
}
}  // namespace

TEST(RoutingPlan, PaddedDispatchSendsFullCapacity) {
  TrainingConfig c = small_config({{"preset", "deepspeed"}});
  Layout l = make_layout(c);
  RoutingPlan p = build_routing_plan(c, l);
  const std::int64_t tokens = 8 * 1024, cap = c.model.expert_capacity(tokens);  // ceil(1.2 * 8192 * 2 / 8) = 2458
  EXPECT_EQ(cap, 2458);
  const LayerRouting& lr = p.at(0, 0).layers[0];
  EXPECT_EQ(lr.rows_sent(0), 8 * cap);
  EXPECT_EQ(lr.rows_computed(3), 8 * cap);
  EXPECT_EQ(p.dropped, 0);
  // Uniform routing keeps every assignment: the padding is exactly capacity minus load.
  EXPECT_EQ(p.padding_rows, 2 * 8 * (8 * cap - 2 * tokens));
}

TEST(RoutingPlan, CountedDispatchSendsKeptRowsAndDropsOverCapacity) {
  TrainingConfig c = small_config({{"preset", "moesys"}}, {{"kind", "zipf"}, {"exponent", 1.5}, {"seed", 3}});
  Layout l = make_layout(c);
  RoutingPlan p = build_routing_plan(c, l);
  EXPECT_GT(p.dropped, 0);  // a Zipf-skewed gate overflows its hottest experts
  EXPECT_EQ(p.padding_rows, 0);
  std::int64_t rows = 0;
  for (int r = 0; r < 8; ++r) rows += p.at(0, 0).layers[0].rows_sent(r) + p.at(0, 0).layers[1].rows_sent(r);
  EXPECT_EQ(rows, p.assignments - p.dropped);
}
