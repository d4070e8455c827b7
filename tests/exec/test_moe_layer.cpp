// The MoE layer on the CPU runtime (4 ranks): a plain dense reference, finite differences, flat vs hierarchical.
#include <gtest/gtest.h>

#include <cmath>

#include "exec/model/moe_layer.hpp"
#include "exec_test_util.hpp"

namespace moesys::exec {
namespace {

using model::MoeLayer;
using model::MoeLayerConfig;

MoeLayerConfig small_config(double capacity_factor) {
  MoeLayerConfig c;
  c.tokens = 16, c.hidden = 8, c.ffn_hidden = 12, c.experts = 8, c.top_k = 2, c.capacity_factor = capacity_factor;
  return c;
}

std::uint64_t wseed(int what, int expert) { return 5000 + std::uint64_t(what) * 100 + std::uint64_t(expert); }

// Parameters chosen by the test: gate from one seed, expert e's tensors from seeds of its global id (biases too,
// so that they are exercised).
void init_layer(core::Runtime& rt, MoeLayer& layer) {
  const auto& c = layer.config();
  const int L = layer.local_experts(), first = rt.rank() * L;
  auto ps = layer.params();
  auto g = model::normal_floats(c.hidden * c.experts, 1.0, 77);
  model::upload(rt, ps[0]->value, g.data(), g.size() * 4);
  const std::int64_t per[4] = {c.hidden * c.ffn_hidden, c.ffn_hidden, c.ffn_hidden * c.hidden, c.hidden};
  for (int w = 0; w < 4; ++w) {
    std::vector<float> all;
    for (int e = 0; e < L; ++e) {
      auto part = model::normal_floats(per[w], w % 2 ? 0.1 : 0.4, wseed(w, first + e));
      all.insert(all.end(), part.begin(), part.end());
    }
    model::upload(rt, ps[std::size_t(w + 1)]->value, all.data(), all.size() * 4);
  }
}

float gelu(float x) { return 0.5f * x * (1.f + std::tanh(0.7978845608f * (x + 0.044715f * x * x * x))); }

// Token by token, with no permutation and no communication: what the layer must compute for this rank's tokens.
std::vector<double> reference(const MoeLayerConfig& c, const std::vector<float>& x, std::int64_t capacity) {
  const std::int64_t T = c.tokens, H = c.hidden, F = c.ffn_hidden, E = c.experts, K = c.top_k;
  auto g = model::normal_floats(H * E, 1.0, 77);
  std::vector<std::vector<int>> choice(static_cast<std::size_t>(T));
  std::vector<std::vector<double>> weight(static_cast<std::size_t>(T));
  for (std::int64_t t = 0; t < T; ++t) {
    std::vector<double> p(static_cast<std::size_t>(E));
    double mx = -1e30, sum = 0;
    for (std::int64_t e = 0; e < E; ++e) {
      double l = 0;
      for (std::int64_t h = 0; h < H; ++h) l += double(x[std::size_t(t * H + h)]) * g[std::size_t(h * E + e)];
      p[std::size_t(e)] = l, mx = std::max(mx, l);
    }
    for (auto& v : p) sum += (v = std::exp(v - mx));
    for (auto& v : p) v /= sum;
    double chosen = 0;
    for (std::int64_t j = 0; j < K; ++j) {
      int best = -1;
      for (int e = 0; e < E; ++e)
        if (std::find(choice[std::size_t(t)].begin(), choice[std::size_t(t)].end(), e) == choice[std::size_t(t)].end() &&
            (best < 0 || p[std::size_t(e)] > p[std::size_t(best)]))
          best = e;
      choice[std::size_t(t)].push_back(best);
      weight[std::size_t(t)].push_back(p[std::size_t(best)]);
      chosen += p[std::size_t(best)];
    }
    for (auto& w : weight[std::size_t(t)]) w /= chosen;
  }
  std::vector<std::int64_t> fill(static_cast<std::size_t>(E), 0);
  std::vector<std::vector<bool>> kept(static_cast<std::size_t>(T), std::vector<bool>(static_cast<std::size_t>(K)));
  for (std::int64_t j = 0; j < K; ++j)
    for (std::int64_t t = 0; t < T; ++t) kept[std::size_t(t)][std::size_t(j)] = fill[std::size_t(choice[std::size_t(t)][std::size_t(j)])]++ < capacity;
  std::vector<double> out(static_cast<std::size_t>(T * H), 0.0);
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t j = 0; j < K; ++j) {
      if (!kept[std::size_t(t)][std::size_t(j)]) continue;
      const int e = choice[std::size_t(t)][std::size_t(j)];
      auto w1 = model::normal_floats(H * F, 0.4, wseed(0, e)), b1 = model::normal_floats(F, 0.1, wseed(1, e));
      auto w2 = model::normal_floats(F * H, 0.4, wseed(2, e)), b2 = model::normal_floats(H, 0.1, wseed(3, e));
      std::vector<float> a(static_cast<std::size_t>(F));
      for (std::int64_t f = 0; f < F; ++f) {
        double s = b1[std::size_t(f)];
        for (std::int64_t h = 0; h < H; ++h) s += double(x[std::size_t(t * H + h)]) * w1[std::size_t(h * F + f)];
        a[std::size_t(f)] = gelu(float(s));
      }
      for (std::int64_t h = 0; h < H; ++h) {
        double s = b2[std::size_t(h)];
        for (std::int64_t f = 0; f < F; ++f) s += double(a[std::size_t(f)]) * w2[std::size_t(f * H + h)];
        out[std::size_t(t * H + h)] += weight[std::size_t(t)][std::size_t(j)] * s;
      }
    }
  return out;
}

struct LayerRun {
  std::unique_ptr<MoeLayer> layer;
  core::Buffer x, out, d_out, d_x;
};

LayerRun make_run(core::Runtime& rt, MoeLayerConfig c) {
  LayerRun r;
  r.layer = std::make_unique<MoeLayer>(rt, core::Group::world(rt.world_size()), c, 3, "moe");
  init_layer(rt, *r.layer);
  const auto bytes = model::f32_bytes(c.tokens * c.hidden);
  for (auto* b : {&r.x, &r.out, &r.d_out, &r.d_x}) *b = rt.alloc(core::Tier::hbm, bytes, "test");
  auto x = model::normal_floats(c.tokens * c.hidden, 1.0, 900 + std::uint64_t(rt.rank()));
  auto d = model::normal_floats(c.tokens * c.hidden, 1.0, 950 + std::uint64_t(rt.rank()));
  model::upload(rt, r.x, x.data(), bytes);
  model::upload(rt, r.d_out, d.data(), bytes);
  return r;
}

TEST(MoeLayer, MatchesDenseReference) {
  auto rt = testing::make_runtime();
  for (double cf : {0.5, 1.0, 4.0}) {  // heavy drops, some drops, none
    LayerRun r = make_run(*rt, small_config(cf));
    r.layer->forward(r.x, r.out);
    auto out = model::download_floats(*rt, r.out, 16 * 8);
    auto x = model::download_floats(*rt, r.x, 16 * 8);
    auto ref = reference(r.layer->config(), x, r.layer->capacity());
    for (std::size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], ref[i], 1e-4 * (1 + std::abs(ref[i]))) << i;
  }
}

double global_loss(core::Runtime& rt, LayerRun& r) {
  r.layer->forward(r.x, r.out);
  auto out = model::download_floats(rt, r.out, 16 * 8), d = model::download_floats(rt, r.d_out, 16 * 8);
  double local = 0, total = 0;
  for (std::size_t i = 0; i < out.size(); ++i) local += double(out[i]) * d[i];
  MPI_Allreduce(&local, &total, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  return total;
}

// Perturbs element i of a buffer on `owner` (every rank when owner < 0) and returns the central difference.
double central_difference(core::Runtime& rt, LayerRun& r, const core::Buffer& b, std::int64_t elems, std::int64_t i,
                          int owner, double eps) {
  auto v = model::download_floats(rt, b, elems);
  const float orig = v[std::size_t(i)];
  const bool mine = owner < 0 || owner == rt.rank();
  double f[2];
  for (int s = 0; s < 2; ++s) {
    if (mine) v[std::size_t(i)] = orig + float(s ? -eps : eps);
    model::upload(rt, b, v.data(), v.size() * 4);
    f[s] = global_loss(rt, r);
  }
  v[std::size_t(i)] = orig;
  model::upload(rt, b, v.data(), v.size() * 4);
  return (f[0] - f[1]) / (2 * eps);
}

TEST(MoeLayer, GradientsMatchFiniteDifferences) {
  auto rt = testing::make_runtime();
  LayerRun r = make_run(*rt, small_config(1.0));
  r.layer->forward(r.x, r.out);
  r.layer->backward(r.d_out, r.d_x);
  const double eps = 1e-2;
  auto check = [&](const char* what, const core::Buffer& value, const core::Buffer& grad, std::int64_t elems,
                   int owner) {
    auto g = model::download_floats(*rt, grad, elems);
    std::vector<float> total(g.size());
    // Replicated values (owner < 0) get every rank's contribution.
    if (owner < 0) MPI_Allreduce(g.data(), total.data(), int(g.size()), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    else total = g;
    double an = 0;
    for (std::int64_t i = 0; i < elems; i += std::max<std::int64_t>(1, elems / 5)) {
      const double fd = central_difference(*rt, r, value, elems, i, owner, eps);
      an = total[std::size_t(i)];
      MPI_Bcast(&an, 1, MPI_DOUBLE, owner < 0 ? 0 : owner, MPI_COMM_WORLD);
      EXPECT_NEAR(fd, an, 3e-3 + 3e-2 * std::abs(an)) << what << "[" << i << "]";
    }
  };
  const auto& c = r.layer->config();
  auto ps = r.layer->params();
  check("x (rank 0)", r.x, r.d_x, c.tokens * c.hidden, 0);
  check("gate", ps[0]->value, ps[0]->grad, ps[0]->elems, -1);
  for (std::size_t p = 1; p < ps.size(); ++p) check(ps[p]->name.c_str(), ps[p]->value, ps[p]->grad, ps[p]->elems, 1);
}

TEST(MoeLayer, FlatAndHierarchicalAllToAllGiveBitwiseIdenticalResults) {
  auto rt = testing::make_runtime();
  auto c = small_config(1.0);
  LayerRun flat = make_run(*rt, c);
  c.all_to_all = core::CollectiveAlgo::hierarchical;
  LayerRun hier = make_run(*rt, c);
  for (LayerRun* r : {&flat, &hier}) r->layer->forward(r->x, r->out), r->layer->backward(r->d_out, r->d_x);
  const auto n = std::size_t(c.tokens * c.hidden);
  EXPECT_EQ(model::download_floats(*rt, flat.out, std::int64_t(n)), model::download_floats(*rt, hier.out, std::int64_t(n)));
  EXPECT_EQ(model::download_floats(*rt, flat.d_x, std::int64_t(n)), model::download_floats(*rt, hier.d_x, std::int64_t(n)));
  auto pf = flat.layer->params(), ph = hier.layer->params();
  for (std::size_t p = 0; p < pf.size(); ++p)
    EXPECT_EQ(model::download_floats(*rt, pf[p]->grad, pf[p]->elems), model::download_floats(*rt, ph[p]->grad, ph[p]->elems))
        << pf[p]->name;
}

}  // namespace
}  // namespace moesys::exec
