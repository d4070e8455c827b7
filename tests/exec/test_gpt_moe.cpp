// The small GPT-MoE on the CPU runtime: it learns a synthetic task, its gradients match finite differences, and
// a run writes a routing trace the simulator can replay.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "exec/model/gpt_moe.hpp"
#include "exec_test_util.hpp"

namespace moesys::exec {
namespace {

using model::GptMoe;
using model::GptMoeConfig;

GptMoeConfig small() {
  GptMoeConfig c;
  c.vocab = 32, c.seq_len = 8, c.micro_batch = 2, c.hidden = 16, c.heads = 2, c.layers = 2, c.experts = 4;
  c.lr = 1e-2;
  return c;
}

TEST(GptMoe, LossFallsOnASyntheticTask) {
  auto rt = testing::make_runtime();
  GptMoeConfig c = small();
  GptMoe gpt(*rt, c);
  std::vector<int> ids, targets;
  std::vector<double> losses;
  for (int step = 0; step < 40; ++step) {
    model::synthetic_batch(c, rt->rank(), step, ids, targets);
    gpt.set_batch(ids, targets);
    losses.push_back(gpt.train_step());
    ASSERT_TRUE(std::isfinite(losses.back()));
  }
  if (rt->rank() == 0) std::printf("loss: first %.4f, last %.4f\n", losses.front(), losses.back());
  EXPECT_NEAR(losses.front(), std::log(double(c.vocab)), 1.0);
  EXPECT_LT(losses.back(), 0.5 * losses.front());
}

TEST(GptMoe, GradientsMatchFiniteDifferences) {
  auto rt = testing::make_runtime();
  GptMoeConfig c = small();
  c.capacity_factor = 4.0;  // no drops: keeps the loss smooth in the gate
  GptMoe gpt(*rt, c);
  std::vector<int> ids, targets;
  model::synthetic_batch(c, rt->rank(), 0, ids, targets);
  gpt.set_batch(ids, targets);
  gpt.forward_backward();
  for (model::Param* p : gpt.params()) {
    auto g = model::download_floats(*rt, p->grad, p->elems);
    std::vector<float> total(g.size());
    // Replicated parameters: the gradient is the sum of every rank's; expert parameters: rank 1's own.
    const int owner = p->replicated ? -1 : 1;
    if (owner < 0) MPI_Allreduce(g.data(), total.data(), int(g.size()), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    else total = g;
    for (std::int64_t i = 0; i < p->elems; i += std::max<std::int64_t>(1, p->elems / 3)) {
      auto v = model::download_floats(*rt, p->value, p->elems);
      const float orig = v[std::size_t(i)];
      // The gate's top-k choice is piecewise: a small step keeps the choice of all 64 tokens unchanged.
      const bool gate = p->name.find("gate") != std::string::npos;
      const double eps = gate ? 1e-3 : 1e-2;
      double f[2];
      for (int s = 0; s < 2; ++s) {
        if (owner < 0 || owner == rt->rank()) v[std::size_t(i)] = orig + float(s ? -eps : eps);
        model::upload(*rt, p->value, v.data(), v.size() * 4);
        f[s] = gpt.forward();
      }
      v[std::size_t(i)] = orig;
      model::upload(*rt, p->value, v.data(), v.size() * 4);
      double an = total[std::size_t(i)];
      MPI_Bcast(&an, 1, MPI_DOUBLE, owner < 0 ? 0 : owner, MPI_COMM_WORLD);
      EXPECT_NEAR((f[0] - f[1]) / (2 * eps), an, (gate ? 1e-3 : 2e-4) + 3e-2 * std::abs(an)) << p->name << "[" << i << "]";
    }
  }
}

TEST(GptMoe, WritesARoutingTraceTheSimulatorReads) {
  auto rt = testing::make_runtime();
  GptMoeConfig c = small();
  GptMoe gpt(*rt, c);
  core::RoutingTrace trace;
  trace.ranks = rt->world_size(), trace.experts = c.experts, trace.layers = c.layers;
  std::vector<int> ids, targets;
  for (int step = 0; step < 3; ++step) {
    model::synthetic_batch(c, rt->rank(), step, ids, targets);
    gpt.set_batch(ids, targets);
    gpt.train_step();
    trace.steps.push_back(gpt.last_routing());
  }
  for (const auto& step : trace.steps) {
    ASSERT_EQ(step.size(), std::size_t(c.layers));
    for (const auto& m : step)
      for (int r = 0; r < m.ranks(); ++r) EXPECT_EQ(m.rank_total(r), c.tokens() * c.top_k);
  }
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("moesys-trace-" + std::to_string(::getpid()) + ".json")).string();
  core::write_routing_trace(path, trace);
  core::RoutingTrace back = core::read_routing_trace(path);
  std::filesystem::remove(path);
  EXPECT_EQ(back.steps, trace.steps);
  core::TraceRouting replay(back);
  EXPECT_EQ(replay.route(1, 1), trace.steps[1][1]);
}

}  // namespace
}  // namespace moesys::exec
