// The MoE layer (gate, dispatch, all-to-all, expert FFNs, combine; forward and backward) on the CUDA runtime
// against the same layer on the CPU runtime, and flat vs hierarchical all-to-all on the GPU (bitwise).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "exec/cuda/tests/cuda_test_util.hpp"
#include "exec/model/moe_layer.hpp"

namespace moesys::exec::cuda {
namespace {

struct LayerRun {
  std::vector<float> out, d_x;
  std::vector<std::vector<float>> grads;
  std::vector<core::Span> spans;
};

model::MoeLayerConfig config(int world, core::CollectiveAlgo algo) {
  model::MoeLayerConfig c;
  c.tokens = 64, c.hidden = 32, c.ffn_hidden = 48, c.experts = world > 4 ? 2 * world : 8, c.top_k = 2;
  c.capacity_factor = 1.0;  // some tokens are dropped
  c.all_to_all = algo;
  return c;
}

LayerRun run_layer(core::Runtime& rt, const model::MoeLayerConfig& c) {
  const auto group = core::Group::world(rt.world_size());
  model::MoeLayer layer(rt, group, c, 3, "moe");
  const std::int64_t n = c.tokens * c.hidden;
  auto x = rt.alloc(core::Tier::hbm, model::f32_bytes(n), "x"),
       out = rt.alloc(core::Tier::hbm, model::f32_bytes(n), "x");
  auto d_out = rt.alloc(core::Tier::hbm, model::f32_bytes(n), "x"),
       d_x = rt.alloc(core::Tier::hbm, model::f32_bytes(n), "x");
  const auto xs = model::normal_floats(n, 1.0, 100 + std::uint64_t(rt.rank()));
  const auto gs = model::normal_floats(n, 1.0, 200 + std::uint64_t(rt.rank()));
  model::upload(rt, x, xs.data(), model::f32_bytes(n));
  model::upload(rt, d_out, gs.data(), model::f32_bytes(n));
  layer.forward(x, out);
  layer.backward(d_out, d_x);
  LayerRun r;
  r.out = model::download_floats(rt, out, n);
  r.d_x = model::download_floats(rt, d_x, n);
  for (auto* p : layer.params()) r.grads.push_back(model::download_floats(rt, p->grad, p->elems));
  r.spans = rt.spans();
  for (auto* b : {&x, &out, &d_out, &d_x}) rt.free(*b);
  return r;
}

void expect_close(const std::vector<float>& a, const std::vector<float>& b, const char* what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (std::size_t i = 0; i < a.size(); ++i)
    ASSERT_NEAR(a[i], b[i], 2e-5 + 1e-4 * std::fabs(a[i])) << what << " element " << i;
}

TEST(CudaMoeLayer, ForwardBackwardMatchesCpuRuntime) {
  const auto c = config(testing::world_size(), core::CollectiveAlgo::direct);
  const LayerRun cpu = run_layer(testing::host(), c);
  const LayerRun gpu = run_layer(testing::gpu(), c);
  expect_close(cpu.out, gpu.out, "output");
  expect_close(cpu.d_x, gpu.d_x, "d_x");
  ASSERT_EQ(cpu.grads.size(), gpu.grads.size());
  for (std::size_t p = 0; p < cpu.grads.size(); ++p) expect_close(cpu.grads[p], gpu.grads[p], "parameter gradient");
}

TEST(CudaMoeLayer, FlatAndHierarchicalAllToAllAreBitwiseIdentical) {
  const int world = testing::world_size();
  auto& rt = testing::gpu();
  rt.clear_spans();
  const LayerRun flat = run_layer(rt, config(world, core::CollectiveAlgo::direct));
  const LayerRun hier = run_layer(rt, config(world, core::CollectiveAlgo::hierarchical));
  ASSERT_EQ(0, std::memcmp(flat.out.data(), hier.out.data(), flat.out.size() * 4));
  ASSERT_EQ(0, std::memcmp(flat.d_x.data(), hier.d_x.data(), flat.d_x.size() * 4));
  for (std::size_t p = 0; p < flat.grads.size(); ++p)
    ASSERT_EQ(0, std::memcmp(flat.grads[p].data(), hier.grads[p].data(), flat.grads[p].size() * 4));
  if (world == 4) {  // 2 nodes x 2 GPUs: the hierarchical algorithm really ran
    bool seen = false;
    for (const auto& s : hier.spans) seen |= s.name == "all_to_all/hierarchical";
    EXPECT_TRUE(seen);
  }
}

}  // namespace
}  // namespace moesys::exec::cuda
