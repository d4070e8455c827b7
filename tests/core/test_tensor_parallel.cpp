// Tensor parallelism's shapes: the model a member holds, its shard of every tensor (each split element on exactly
// one member, each whole tensor on all of them), the ranges whose gradients the group sums, the layout's groups, the
// refused mappings and what sequence parallelism does to a rank's memory.
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
core::ModelConfig zoo(const std::string& name) {
  json model = {{"preset", name}};
  if (name == "deepseek-v3") model["mtp_layers"] = 0;
  return parse_training_config({{"model", model}, {"cluster", {{"gpus", 64}, {"gpu", "h100"}}}}, "f.json").model;
}

std::vector<std::int64_t> unit_sizes(const core::ModelConfig& m, int unit) {
  return unit == 0 ? embedding_tensors(m) : layer_dense_tensors(m, unit - 1);
}

/// Every element of unit `unit` drawn as its own index, sharded for each member: a split element must land on one
/// member, a whole one on all `tp`, and each member's shard must have rank_model's sizes.
void check_partition(const core::ModelConfig& m, int unit, int tp) {
  std::int64_t total = 0;
  for (auto e : unit_sizes(m, unit)) total += e;
  std::vector<float> values(static_cast<std::size_t>(total));
  for (std::int64_t i = 0; i < total; ++i) values[static_cast<std::size_t>(i)] = static_cast<float>(i);
  const core::ModelConfig local = rank_model(m, tp);
  std::int64_t local_total = 0;
  for (auto e : unit_sizes(local, unit)) local_total += e;
  std::map<std::int64_t, int> copies;
  std::vector<std::vector<float>> shards;
  for (int r = 0; r < tp; ++r) {
    shards.push_back(shard_unit(m, unit, tp, r, values));
    ASSERT_EQ(static_cast<std::int64_t>(shards.back().size()), local_total) << "unit " << unit << " member " << r;
    for (float v : shards.back()) ++copies[static_cast<std::int64_t>(v)];
  }
  // The ranges the group sums hold elements every member has, at the same place on every member.
  for (const auto& [first, end] : replicated_ranges(m, unit, tp, unit_sizes(local, unit)))
    for (std::int64_t i = first; i < end; ++i) {
      const float v = shards[0][static_cast<std::size_t>(i)];
      EXPECT_EQ(copies[static_cast<std::int64_t>(v)], tp) << "unit " << unit << " element " << i;
      for (int r = 1; r < tp; ++r) EXPECT_EQ(shards[static_cast<std::size_t>(r)][static_cast<std::size_t>(i)], v);
    }
  ASSERT_EQ(static_cast<std::int64_t>(copies.size()), total) << "every element is on some member";
  std::int64_t whole = 0;
  for (const auto& [index, n] : copies) {
    EXPECT_TRUE(n == 1 || n == tp) << "element " << index << " on " << n << " members";
    whole += n == tp;
  }
  std::int64_t in_ranges = 0;
  for (const auto& [first, end] : replicated_ranges(m, unit, tp, unit_sizes(local, unit))) in_ranges += end - first;
  EXPECT_EQ(in_ranges, whole) << "unit " << unit;
}
}  // namespace

TEST(TensorParallel, MemberModelDividesHeadsAndTheDenseWidthOnly) {
  const core::ModelConfig m = zoo("qwen3-235b-a22b"), r = rank_model(m, 4);
  EXPECT_EQ(r.heads, m.heads / 4);
  EXPECT_EQ(r.kv_head_count(), m.kv_head_count() / 4);
  EXPECT_EQ(r.head_dim(), m.head_dim());
  EXPECT_EQ(r.expert_hidden(), m.expert_hidden());
  EXPECT_EQ(r.hidden, m.hidden);
  EXPECT_EQ(r.q_width() * 4, m.q_width());
  EXPECT_EQ(rank_model(m, 1), m);
}

TEST(TensorParallel, EverySplitElementIsOnOneMemberAndEveryWholeTensorOnAll) {
  for (const std::string name : {"deepseek-v3", "qwen3-30b-a3b", "mixtral-8x7b"}) {
    SCOPED_TRACE(name);
    core::ModelConfig m = zoo(name);
    m.hidden = 64, m.vocab = 100, m.seq_len = 16;  // small tensors, the same structure
    m.head_dim_elems = m.attention == core::AttentionKind::mla ? 0 : 8;
    if (m.attention == core::AttentionKind::mla) m.mla = {16, 8, 8, 4, 8};
    m.dense_ffn_width = 96, m.expert_ffn_width = 32;
    for (int unit : {0, 1, m.layers}) check_partition(m, unit, 2);
  }
  core::ModelConfig gpt = zoo("gpt-moe-8e");  // biases, learned positions, GeLU
  gpt.hidden = 64, gpt.heads = 8, gpt.vocab = 100, gpt.seq_len = 16, gpt.dense_ffn_width = 128;
  for (int unit : {0, 1, 2}) check_partition(gpt, unit, 4);
}

TEST(TensorParallel, ColumnAndRowShardsAreContiguousBlocksOfTheWholeTensor) {
  core::ModelConfig m = zoo("qwen3-30b-a3b");
  m.hidden = 8, m.heads = 4, m.kv_heads = 2, m.head_dim_elems = 2, m.vocab = 10, m.first_dense_layers = 1;
  m.dense_ffn_width = 4, m.expert_ffn_width = 4;
  const auto sizes = unit_sizes(m, 1);
  std::int64_t total = 0;
  for (auto e : sizes) total += e;
  std::vector<float> v(static_cast<std::size_t>(total));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i);
  // Q is [h][q] with q = 8: member 1 holds columns 4..7 of every row, starting with row 0.
  const std::vector<float> second = shard_unit(m, 1, 2, 1, v);
  EXPECT_EQ(second[0], 4.f);
  EXPECT_EQ(second[3], 7.f);
  EXPECT_EQ(second[4], 12.f);  // row 1
  // The attention output [q][h] splits by rows: member 1's block starts at row 4 of that tensor.
  const core::ModelConfig r = rank_model(m, 2);
  const auto local = unit_sizes(r, 1);
  std::int64_t at_local = 0, at_whole = 0;
  for (int t = 0; t < kOut; ++t) at_local += local[static_cast<std::size_t>(t)], at_whole += sizes[static_cast<std::size_t>(t)];
  EXPECT_EQ(second[static_cast<std::size_t>(at_local)], static_cast<float>(at_whole + 4 * m.hidden));
}

TEST(TensorParallel, GroupsAreContiguousAndDataParallelRanksShareAnIndex) {
  json c = {{"model", {{"preset", "qwen3-30b-a3b"}}},
            {"cluster", {{"gpus", 32}, {"gpu", "h100"}}},
            {"parallel", {{"tp", 4}, {"pp", 2}}},
            {"policy", {{"preset", "megatron"}}}};
  const Layout l = make_layout(parse_training_config(c, "f.json"));
  EXPECT_EQ(l.dp(), 4);
  EXPECT_EQ(l.tp_group(21).ranks(), (std::vector<int>{20, 21, 22, 23}));
  EXPECT_EQ(l.dp_group(21).ranks(), (std::vector<int>{17, 21, 25, 29}));
}

TEST(TensorParallel, ImpossibleMappingsAreRefusedWithTheReason) {
  auto why = [](json parallel, json model = {{"preset", "qwen3-30b-a3b"}, {"layers", 4}, {"global_batch", 64}}, json policy = {{"preset", "megatron"}}) {
    try {
      make_training_plan(parse_training_config(
          {{"model", model}, {"cluster", {{"gpus", 32}, {"gpu", "h100"}}}, {"parallel", parallel}, {"policy", policy}},
          "f.json"));
    } catch (const core::InfeasibleError& e) {
      return std::string(e.what());
    }
    return std::string("feasible");
  };
  EXPECT_NE(why({{"tp", 16}}).find("stay inside a node"), std::string::npos);
  EXPECT_NE(why({{"tp", 8}}).find("4 key/value heads do not divide"), std::string::npos);
  EXPECT_NE(why({{"tp", 2}}, {{"preset", "qwen3-30b-a3b"}}, {{"preset", "moesys"}}).find("dense zero3"), std::string::npos);
  EXPECT_NE(why({{"tp", 2}}, {{"preset", "gpt-moe"}, {"experts", 8}, {"micro_batch", 1}}, {{"preset", "deepspeed"}})
                .find("learned positions need whole sequences"),
            std::string::npos);
  EXPECT_EQ(why({{"tp", 4}}), "feasible");
}

TEST(ContextParallel, GroupsStrideTheTensorParallelRanksAndShareTheirReplica) {
  json c = {{"model", {{"preset", "qwen3-30b-a3b"}}},
            {"cluster", {{"gpus", 32}, {"gpu", "h100"}}},
            {"parallel", {{"tp", 2}, {"cp", 4}, {"pp", 2}}},
            {"policy", {{"preset", "megatron"}}}};
  const Layout l = make_layout(parse_training_config(c, "f.json"));
  EXPECT_EQ(l.batch_replicas(), 2);
  EXPECT_EQ(l.dp(), 8) << "the dense weights' gradients are summed over the chunks too";
  EXPECT_EQ(l.cp_group(27).ranks(), (std::vector<int>{25, 27, 29, 31}));
  EXPECT_EQ(l.cp_index(27), 1);
  EXPECT_EQ(l.replica_index(27), 1);
  EXPECT_EQ(l.replica_index(23), 0);
}

TEST(ContextParallel, ChunksQuarterEachRanksTokensAndRefuseWhatTheyCannotSplit) {
  auto plan = [](int cp) {
    return make_training_plan(parse_training_config({{"model", {{"preset", "qwen3-30b-a3b"}, {"layers", 4}, {"global_batch", 64}}},
                                                     {"cluster", {{"gpus", 32}, {"gpu", "h100"}}},
                                                     {"parallel", {{"cp", cp}}},
                                                     {"policy", {{"preset", "megatron"}}}},
                                                    "f.json"));
  };
  const TrainingPlan one = plan(1), four = plan(4);
  EXPECT_EQ(four.routing.micro_batches, 4 * one.routing.micro_batches);  // a quarter of the replicas
  EXPECT_EQ(four.routing.at(0, 0).tokens[0] * 4, one.routing.at(0, 0).tokens[0]);
  auto refusal = [](json model, json parallel) {
    try {
      make_training_plan(parse_training_config(
          {{"model", model}, {"cluster", {{"gpus", 32}, {"gpu", "h100"}}}, {"parallel", parallel}, {"policy", {{"preset", "megatron"}}}},
          "f.json"));
    } catch (const core::InfeasibleError& e) {
      return std::string(e.what());
    }
    return std::string("feasible");
  };
  const json qwen = {{"preset", "qwen3-30b-a3b"}, {"layers", 4}, {"global_batch", 64}};
  EXPECT_NE(refusal(qwen, {{"cp", 3}}).find("do not divide into 3"), std::string::npos);
  EXPECT_NE(refusal({{"preset", "gpt-moe"}, {"experts", 32}}, {{"cp", 2}}).find("learned position table"),
            std::string::npos);
  json odd = qwen;
  odd["seq_len"] = 4095;
  EXPECT_NE(refusal(odd, {{"cp", 2}}).find("sequence length 4095 does not divide"), std::string::npos);
  EXPECT_EQ(refusal(qwen, {{"cp", 2}, {"tp", 2}}), "feasible");
}

TEST(TensorParallel, SequenceShardsHalveEachRanksActivations) {
  auto plan = [](int tp) {
    return make_training_plan(parse_training_config({{"model", {{"preset", "qwen3-30b-a3b"}, {"layers", 4}, {"global_batch", 64}}},
                                                     {"cluster", {{"gpus", 32}, {"gpu", "h100"}}},
                                                     {"parallel", {{"tp", tp}}},
                                                     {"policy", {{"preset", "megatron"}}}},
                                                    "f.json"));
  };
  const TrainingPlan one = plan(1), two = plan(2);
  EXPECT_EQ(two.routing.micro_batches, 2 * one.routing.micro_batches);  // half the data-parallel replicas
  EXPECT_EQ(two.routing.at(0, 0).tokens[0] * 2, one.routing.at(0, 0).tokens[0]);
  auto activations = [](const TrainingPlan& p) {
    return static_cast<double>(p.memory.ranks[0].at_peak[0][static_cast<std::size_t>(MemoryUse::activations)]);
  };
  EXPECT_NEAR(activations(two) / activations(one), 0.5, 0.05);
}
