// Expert replicas: where EPLB and hot-expert shadowing put their copies, how a sender's rows are split over an
// expert's holders, when the planner rebalances, what the routing plan's ranks compute with copies, the policy's
// parse errors and the combinations refused with their reason.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <numeric>

#include "core/error.hpp"
#include "policies/training/expert_replicas.hpp"
#include "policies/training/training_plan.hpp"

using namespace moesys;
using namespace moesys::policies::training;
using nlohmann::json;

namespace {

int copies_of(const ReplicaMap& m, int e) { return static_cast<int>(m.holders(e).size()) - 1; }

TEST(ExpertReplicas, EplbGivesSpareSlotsToTheLargestLoadPerCopy) {
  // 4 members x 2 experts; expert 0 carries half the tokens, expert 5 a quarter.
  const std::vector<double> load = {800, 50, 50, 50, 50, 400, 100, 100};
  const ReplicaMap m = place_replicas(Replication::eplb, load, 4, 2, 1);
  // Four spare slots: expert 0 gets three (800 / 4 = 200 per copy), then expert 5 one (400 / 2 = 200).
  EXPECT_EQ(copies_of(m, 0), 3);
  EXPECT_EQ(copies_of(m, 5), 1);
  for (int e : {1, 2, 3, 4, 6, 7}) EXPECT_EQ(copies_of(m, e), 0) << e;
  // No member holds two copies of one expert, nor a copy of its own.
  for (int e = 0; e < 8; ++e) {
    const auto h = m.holders(e);
    EXPECT_EQ(h.front(), std::make_pair(e / 2, e % 2));
    for (std::size_t i = 1; i < h.size(); ++i) {
      EXPECT_NE(h[i].first, e / 2);
      EXPECT_GE(h[i].second, 2);
      for (std::size_t j = 1; j < i; ++j) EXPECT_NE(h[i].first, h[j].first);
    }
  }
}

TEST(ExpertReplicas, EplbNodeScopeCopiesANodesOwnExpertsOnThatNode) {
  // 4 members x 2 experts on 2 nodes of 2 members: node 0 owns experts 0-3, node 1 experts 4-7.
  const std::vector<double> load = {800, 50, 50, 50, 50, 400, 100, 100};
  const ReplicaMap m = place_replicas(Replication::eplb, load, 4, 2, 1, 2);
  EXPECT_EQ(copies_of(m, 0), 1);  // at most one copy per other member of its node
  EXPECT_EQ(copies_of(m, 5), 1);
  for (int e = 0; e < 8; ++e)
    for (const auto& [member, slot] : m.holders(e)) EXPECT_EQ(member / 2, e / 4) << "expert " << e;
  EXPECT_EQ(m.slot_expert, (std::vector<int>{-1, 0, 6, 5}));  // member 0 owns expert 0: its slot stays free
  // One node group of the whole expert-parallel group is the global form.
  EXPECT_EQ(place_replicas(Replication::eplb, load, 4, 2, 1, 4), place_replicas(Replication::eplb, load, 4, 2, 1));
  // The planner applies the scope only when asked to.
  ReplicaPlanner global({Replication::eplb, 1, 1}, 1, 8, 4, 2, 2), node({Replication::eplb, 1, 1, true}, 1, 8, 4, 2, 2);
  global.observe(0, {load});
  node.observe(0, {load});
  EXPECT_EQ(copies_of(global.maps()[0], 0), 3);
  EXPECT_EQ(node.maps()[0], m);
}

TEST(ExpertReplicas, HotShadowingCopiesTheHottestExpertsToEveryMember) {
  const std::vector<double> load = {10, 90, 20, 70, 5, 5, 5, 5};
  const ReplicaMap m = place_replicas(Replication::hot, load, 4, 2, 2);
  EXPECT_EQ(copies_of(m, 1), 3);  // on every member but its owner
  EXPECT_EQ(copies_of(m, 3), 3);
  EXPECT_EQ(copies_of(m, 2), 0);
  // Member 0 owns expert 1: one slot holds expert 3, the other stays free.
  EXPECT_EQ(m.slot_expert[0], 3);
  EXPECT_EQ(m.slot_expert[1], -1);
  // Copies sit in expert order, so one owner's experts are side by side.
  EXPECT_EQ(m.slot_expert[2 * 2 + 0], 1);
  EXPECT_EQ(m.slot_expert[2 * 2 + 1], 3);
}

TEST(ExpertReplicas, ASenderKeepsItsRowsWhenItHoldsACopyElseSpreadsThemEvenly) {
  ReplicaMap m = no_replicas(4, 1, 1);
  m.slot_expert = {-1, 0, 0, -1};  // expert 0 (owner 0) has copies on members 1 and 2
  EXPECT_EQ(m.split_rows(0, 1, 10), (std::vector<std::int64_t>{0, 10, 0}));
  EXPECT_EQ(m.split_rows(0, 0, 10), (std::vector<std::int64_t>{10, 0, 0}));
  const auto three = m.split_rows(0, 3, 10);
  EXPECT_EQ(std::accumulate(three.begin(), three.end(), std::int64_t{0}), 10);
  for (auto v : three) EXPECT_TRUE(v == 3 || v == 4);
  // Remainders rotate with the sender: over three senders of 1 row, each holder gets one.
  ReplicaMap n = no_replicas(6, 1, 1);
  n.slot_expert = {-1, 0, 0, -1, -1, -1};
  std::vector<std::int64_t> got(3, 0);
  for (int s = 3; s < 6; ++s) {
    const auto split = n.split_rows(0, s, 1);
    for (std::size_t k = 0; k < 3; ++k) got[k] += split[k];
  }
  EXPECT_EQ(got, (std::vector<std::int64_t>{1, 1, 1}));
}

TEST(ExpertReplicas, PlannerStartsWithoutCopiesAndRebalancesEveryNSteps) {
  ReplicaPlanner p({Replication::eplb, 1, 2}, 1, 4, 2, 2, 2);
  EXPECT_FALSE(p.maps()[0].any());
  p.observe(0, {{100, 1, 1, 1}});
  EXPECT_FALSE(p.maps()[0].any()) << "step 1 is not a multiple of every = 2";
  p.observe(1, {{1, 1, 1, 100}});
  ASSERT_TRUE(p.maps()[0].any());
  // Load summed over steps 0 and 1: experts 0 and 3 tie at 101; one copy each.
  EXPECT_EQ(copies_of(p.maps()[0], 0), 1);
  EXPECT_EQ(copies_of(p.maps()[0], 3), 1);
  ReplicaPlanner hot({Replication::hot, 1, 1}, 1, 4, 2, 2, 2);
  hot.observe(0, {{1, 1, 50, 1}});
  EXPECT_EQ(copies_of(hot.maps()[0], 2), 1);
  hot.observe(1, {{60, 1, 1, 1}});
  EXPECT_EQ(copies_of(hot.maps()[0], 2), 0) << "hot follows the last step only";
  EXPECT_EQ(copies_of(hot.maps()[0], 0), 1);
}

json skewed(const json& replicas) {
  json policy = {{"preset", "deepspeed"}, {"gate", "dropless"}, {"dispatch", "counts"}};
  if (!replicas.is_null()) policy["replicas"] = replicas;
  return {{"model", {{"preset", "gpt-moe"}, {"experts", 16}, {"global_batch", 128}}},
          {"cluster", {{"gpus", 16}}},
          {"policy", policy},
          {"workload", {{"kind", "zipf"}, {"exponent", 1.0}}},
          {"steps", 3}};
}

std::int64_t busiest_rank_rows(const RoutingPlan& p, int step) {
  std::int64_t most = 0;
  for (const auto& mb : p.steps[static_cast<std::size_t>(step)])
    for (const auto& lr : mb.layers)
      for (int r = 0; r < static_cast<int>(lr.expert_rows.size()); ++r) most = std::max(most, lr.rows_computed(r));
  return most;
}

TEST(ExpertReplicas, RoutingPlanSpreadsASkewedLoadFromTheSecondStep) {
  const TrainingPlan none = make_training_plan(parse_training_config(skewed(nullptr), "f.json"));
  const TrainingPlan eplb = make_training_plan(parse_training_config(skewed({{"kind", "eplb"}, {"slots", 1}}), "f.json"));
  EXPECT_EQ(busiest_rank_rows(eplb.routing, 0), busiest_rank_rows(none.routing, 0)) << "nothing measured yet";
  EXPECT_LT(busiest_rank_rows(eplb.routing, 2), 0.7 * static_cast<double>(busiest_rank_rows(none.routing, 2)));
  EXPECT_LT(eplb.routing.rank_imbalance, none.routing.rank_imbalance);
  // Every row is still computed exactly once.
  for (std::size_t s = 0; s < 3; ++s) {
    std::int64_t a = 0, b = 0;
    for (const auto& lr : none.routing.steps[s][0].layers)
      for (std::size_t r = 0; r < lr.expert_rows.size(); ++r) a += lr.rows_computed(static_cast<int>(r));
    for (const auto& lr : eplb.routing.steps[s][0].layers)
      for (std::size_t r = 0; r < lr.expert_rows.size(); ++r) b += lr.rows_computed(static_cast<int>(r));
    EXPECT_EQ(a, b) << "step " << s;
  }
  // The copies take memory: a spare slot holds an expert's values and gradient.
  const auto params = static_cast<std::size_t>(MemoryUse::parameters);
  const auto hbm = static_cast<std::size_t>(core::Tier::hbm);
  EXPECT_GT(eplb.memory.ranks[0].at_peak[hbm][params], none.memory.ranks[0].at_peak[hbm][params]);
}

TEST(ExpertReplicas, GenerationPlanSpreadsASkewedLoadFromTheSecondPass) {
  json c = skewed({{"kind", "eplb"}, {"slots", 1}});
  c["model"]["seq_len"] = 256;
  GenerationPlan g;
  g.sequences = 64, g.prompt_tokens = 32, g.output_tokens = 4;
  const TrainingPlan eplb = make_generation_plan(parse_training_config(c, "f.json"), g);
  c["policy"].erase("replicas");
  const TrainingPlan none = make_generation_plan(parse_training_config(c, "f.json"), g);
  // Uniform routing would leave nothing to balance: the generation plans with the workload's skew.
  std::vector<std::vector<core::RoutingMatrix>> zipf;
  auto model = core::make_routing_model({{"kind", "zipf"}, {"exponent", 1.0}}, "f.json", "workload", 16, 16,
                                        none.config.model.moe_layers(), 64 * 32, none.config.model.top_k);
  for (int pass = 0; pass < g.passes(); ++pass) {
    auto& layers = zipf.emplace_back();
    for (int l = 0; l < none.config.model.moe_layers(); ++l) layers.push_back(model->route(pass, l));
  }
  c["policy"]["replicas"] = {{"kind", "eplb"}, {"slots", 1}};
  const TrainingPlan skew_eplb = make_generation_plan(parse_training_config(c, "f.json"), g, zipf);
  c["policy"].erase("replicas");
  const TrainingPlan skew_none = make_generation_plan(parse_training_config(c, "f.json"), g, zipf);
  ASSERT_EQ(skew_eplb.routing.replicas.size(), 4u);
  EXPECT_FALSE(skew_eplb.routing.replicas[0][0].any()) << "the prefill has measured nothing yet";
  EXPECT_TRUE(skew_eplb.routing.replicas[1][0].any());
  EXPECT_EQ(busiest_rank_rows(skew_eplb.routing, 0), busiest_rank_rows(skew_none.routing, 0));
  EXPECT_LT(busiest_rank_rows(skew_eplb.routing, 1), 0.8 * static_cast<double>(busiest_rank_rows(skew_none.routing, 1)));
  // The copies hold weights only while generating: no gradients for them.
  const auto hbm = static_cast<std::size_t>(core::Tier::hbm);
  EXPECT_GT(eplb.memory.ranks[0].at_peak[hbm][static_cast<std::size_t>(MemoryUse::parameters)],
            none.memory.ranks[0].at_peak[hbm][static_cast<std::size_t>(MemoryUse::parameters)]);
  EXPECT_EQ(eplb.memory.ranks[0].at_peak[hbm][static_cast<std::size_t>(MemoryUse::gradients)], 0u);
}

std::string error_of(const json& replicas, const json& extra = json::object()) {
  json c = skewed(replicas);
  c["policy"].merge_patch(extra);
  try {
    make_training_plan(parse_training_config(c, "f.json"));
  } catch (const core::ConfigError& e) {
    return std::string("config: ") + e.what();
  } catch (const core::InfeasibleError& e) {
    return std::string("infeasible: ") + e.what();
  }
  return "accepted";
}

TEST(ExpertReplicas, BadSettingsAreConfigErrorsAndUnsupportedCombinationsAreRefused) {
  EXPECT_NE(error_of({{"kind", "everywhere"}}).find("policy.replicas.kind: expected one of none, eplb, hot"),
            std::string::npos)
      << error_of({{"kind", "everywhere"}});
  EXPECT_NE(error_of({{"kind", "eplb"}, {"slots", 0}}).find("policy.replicas.slots"), std::string::npos);
  EXPECT_NE(error_of({{"kind", "eplb"}, {"every", 0}}).find("policy.replicas.every"), std::string::npos);
  EXPECT_NE(error_of({{"kind", "eplb"}, {"copies", 1}}).find("policy.replicas.copies: unknown key"), std::string::npos);
  EXPECT_NE(error_of(3).find("policy.replicas: expected an object"), std::string::npos);
  EXPECT_NE(error_of({{"kind", "eplb"}}, {{"dispatch", "padded"}}).find("infeasible: expert replicas split"),
            std::string::npos);
  EXPECT_NE(error_of({{"kind", "hot"}}, {{"offload", "cpu"}}).find("infeasible: expert replicas with offloaded"),
            std::string::npos);
  EXPECT_EQ(error_of({{"kind", "none"}}, {{"dispatch", "padded"}, {"gate", "gshard"}}), "accepted");
  EXPECT_NE(error_of({{"kind", "eplb"}, {"scope", "rack"}}).find("policy.replicas.scope: expected \"global\" or"),
            std::string::npos);
  EXPECT_NE(error_of({{"kind", "hot"}, {"scope", "node"}}).find("policy.replicas.scope: applies to kind \"eplb\""),
            std::string::npos);
  EXPECT_EQ(error_of({{"kind", "eplb"}, {"scope", "node"}}), "accepted");
  // 24 GPUs of 8 per node in expert-parallel groups of 12 ranks: a group straddles a node boundary unevenly.
  json odd = skewed({{"kind", "eplb"}, {"scope", "node"}});
  odd["model"]["experts"] = 12;
  odd["model"]["global_batch"] = 192;
  odd["cluster"]["gpus"] = 24;
  odd["parallel"] = {{"ep", 12}};
  try {
    make_training_plan(parse_training_config(odd, "f.json"));
    ADD_FAILURE() << "accepted";
  } catch (const core::InfeasibleError& e) {
    EXPECT_NE(std::string(e.what()).find("node-scoped expert replicas need"), std::string::npos) << e.what();
  }
}

}  // namespace
