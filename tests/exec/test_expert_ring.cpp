// Ring memory and prefetch with real copies on the CPU runtime: experts kept in DRAM or in SSD files and streamed
// through K HBM slots give bit-identical losses, gradients and trained weights to all-in-memory runs, with or
// without prefetch; the copies really happen (bytes in the ring's counters and in the trace) and the HBM ledger
// shows the saving.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "exec/model/gpt_moe.hpp"
#include "exec_test_util.hpp"

namespace moesys::exec {
namespace {

using core::Tier;
using model::ExpertOffload;
using model::GptMoe;
using model::GptMoeConfig;

GptMoeConfig config(ExpertOffload o) {
  GptMoeConfig c;
  c.vocab = 32, c.seq_len = 8, c.micro_batch = 2, c.hidden = 16, c.heads = 2, c.layers = 4, c.experts = 4;
  c.lr = 1e-2;
  c.offload = o;
  return c;
}

struct Outcome {
  std::vector<double> losses;
  std::vector<std::vector<float>> grads, values;
  model::RingStats stats;
  std::uint64_t hbm_peak = 0, home_peak = 0, slot_peak = 0, slot_bytes = 0, fill_span_bytes = 0;
};

// Trains `steps` steps, then one more forward + backward; records what must not depend on where experts live.
Outcome train(ExpertOffload o, int steps = 3) {
  auto rt = testing::make_runtime();
  const GptMoeConfig c = config(o);
  GptMoe gpt(*rt, c);
  rt->clear_spans();
  std::vector<int> ids, targets;
  Outcome out;
  for (int step = 0; step <= steps; ++step) {
    model::synthetic_batch(c, rt->rank(), step, ids, targets);
    gpt.set_batch(ids, targets);
    out.losses.push_back(step < steps ? gpt.train_step() : gpt.forward_backward());
  }
  const std::string fill = std::string("copy ") + core::to_string(o.home) + "->hbm";
  for (const auto& s : rt->spans())
    if (s.kind == core::SpanKind::copy && s.name == fill) out.fill_span_bytes += s.bytes;
  for (model::Param* p : gpt.params()) {
    out.grads.push_back(model::download_floats(*rt, p->grad, p->elems));
    out.values.push_back(model::download_floats(*rt, p->value, p->elems));
  }
  if (gpt.ring()) out.stats = gpt.ring()->stats(), out.slot_bytes = gpt.ring()->slot_bytes();
  out.hbm_peak = rt->memory().peak_bytes(Tier::hbm);
  out.home_peak = rt->memory().peak_bytes(o.home);
  const auto& tags = rt->memory().peak_by_tag(Tier::hbm);
  if (auto it = tags.find("expert-slot"); it != tags.end()) out.slot_peak = it->second;
  return out;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void expect_identical(const Outcome& ref, const Outcome& got, const std::string& what) {
  ASSERT_EQ(ref.losses.size(), got.losses.size());
  for (std::size_t i = 0; i < ref.losses.size(); ++i)
    EXPECT_EQ(std::memcmp(&ref.losses[i], &got.losses[i], sizeof(double)), 0) << what << " loss " << i;
  ASSERT_EQ(ref.grads.size(), got.grads.size());
  for (std::size_t i = 0; i < ref.grads.size(); ++i) {
    EXPECT_TRUE(bitwise_equal(ref.grads[i], got.grads[i])) << what << ": gradient of parameter " << i;
    EXPECT_TRUE(bitwise_equal(ref.values[i], got.values[i])) << what << ": value of parameter " << i;
  }
}

TEST(ExpertRing, TrainingIsBitwiseIdenticalToAllInMemory) {
  const Outcome ref = train({Tier::hbm, 0, false});
  EXPECT_LT(ref.losses.back(), ref.losses.front());
  struct Case {
    ExpertOffload o;
    const char* what;
  };
  for (const Case& k :
       {Case{{Tier::dram, 2, true}, "dram, 2 slots, prefetch"},
        Case{{Tier::dram, 2, false}, "dram, 2 slots, on demand"}, Case{{Tier::ssd, 1, true}, "ssd, 1 slot, prefetch"},
        Case{{Tier::ssd, 3, true}, "ssd, 3 slots, prefetch"}, Case{{Tier::ssd, 2, false}, "ssd, 2 slots, on demand"}}) {
    const Outcome got = train(k.o);
    expect_identical(ref, got, k.what);
    // Copies really happened: every fill is in the trace with its bytes, every backward wrote gradients home.
    EXPECT_GT(got.stats.h2d_bytes, 0u) << k.what;
    if (k.o.home == Tier::ssd) {
      EXPECT_EQ(got.fill_span_bytes, got.stats.h2d_bytes) << k.what;
      EXPECT_GT(got.stats.host_bytes, 0u) << k.what;  // the optimizer staged through DRAM
    } else {
      EXPECT_GE(got.fill_span_bytes, got.stats.h2d_bytes) << k.what;  // + the token uploads
    }
    const int passes = 4, layers = 4;
    EXPECT_EQ(got.stats.d2h_bytes, std::uint64_t(passes * layers) * got.slot_bytes / 2) << k.what;
    EXPECT_EQ(k.o.prefetch ? got.stats.fills_on_demand : got.stats.fills_ahead, 0) << k.what;
    EXPECT_EQ(got.stats.h2d_bytes,
              std::uint64_t(got.stats.fills_ahead + got.stats.fills_on_demand) * got.slot_bytes / 2)
        << k.what;
    // The HBM ledger: the resident run holds every layer's expert states (value, gradient, two moments); the
    // ring holds K slots of values and gradients. Nothing else in HBM differs.
    const std::uint64_t layer_states = 2 * got.slot_bytes;
    EXPECT_EQ(got.slot_peak, std::uint64_t(k.o.slots) * got.slot_bytes) << k.what;
    EXPECT_EQ(ref.hbm_peak - got.hbm_peak, layers * layer_states - got.slot_peak) << k.what;
    EXPECT_GE(got.home_peak, layers * layer_states) << k.what;
  }
}

// Inference passes (forward only): the ring of the paper. With prefetch, layer l+1's experts are copied before
// layer l's MoE runs (one layer ahead with two slots); on demand, only layer l's own.
TEST(ExpertRing, ForwardPassesPrefetchOneLayerAhead) {
  double ref_loss = 0;
  {
    auto rt = testing::make_runtime();
    GptMoe gpt(*rt, config({Tier::hbm, 0, false}));
    std::vector<int> ids, targets;
    model::synthetic_batch(gpt.config(), rt->rank(), 0, ids, targets);
    gpt.set_batch(ids, targets);
    ref_loss = gpt.forward();
  }
  for (bool prefetch : {true, false}) {
    auto rt = testing::make_runtime();
    GptMoe gpt(*rt, config({Tier::ssd, 2, prefetch}));
    std::vector<int> ids, targets;
    model::synthetic_batch(gpt.config(), rt->rank(), 0, ids, targets);
    gpt.set_batch(ids, targets);
    rt->clear_spans();
    for (int pass = 0; pass < 2; ++pass) {
      const double loss = gpt.forward();
      EXPECT_EQ(std::memcmp(&loss, &ref_loss, sizeof loss), 0) << "prefetch " << prefetch;
    }
    // Two passes of four layers: each layer copied once per pass (the slots forget between passes).
    EXPECT_EQ(gpt.ring()->stats().h2d_bytes, 2 * 4 * gpt.ring()->slot_bytes() / 2);
    int copies = 0, layer = 0;
    for (const auto& s : rt->spans()) {
      if (s.name == "copy ssd->hbm") ++copies;
      if (s.name != "gate:logits" || layer >= 4) continue;
      const int ahead = prefetch ? std::min(layer + 2, 4) : layer + 1;  // layers whose 4 tensors were copied
      EXPECT_EQ(copies, 4 * ahead) << "before layer " << layer << "'s MoE, prefetch " << prefetch;
      ++layer;
    }
    EXPECT_EQ(layer, 4);
  }
}

}  // namespace
}  // namespace moesys::exec
