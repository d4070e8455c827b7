// The exec GPT-MoE with its experts offloaded runs unchanged in the simulator (buffers carry sizes only): the
// ring's copies appear as SSD -> HBM spans with the bytes the ring counts, the HBM ledger shows the saving, and
// prefetching one layer ahead hides copy time that fetching on demand exposes. Linked only when exec/ is built
// (exec/tests.cmake adds moesys_exec and MOESYS_HAVE_EXEC to this test program).
#include <gtest/gtest.h>

#ifdef MOESYS_HAVE_EXEC
#include <cstdio>

#include "core/cluster.hpp"
#include "exec/model/gpt_moe.hpp"
#include "fork_run.hpp"
#include "sim/simulation.hpp"

namespace moesys::exec {
namespace {

using core::Tier;
using model::ExpertOffload;

// Big enough that expert copies (~4 MB per layer per rank at PCIe / NVMe rates) are comparable to compute.
model::GptMoeConfig config(ExpertOffload o) {
  model::GptMoeConfig c;
  c.vocab = 512, c.seq_len = 256, c.micro_batch = 2, c.hidden = 256, c.heads = 4, c.layers = 4, c.experts = 4;
  c.offload = o;
  return c;
}

// {makespan, rank 0's HBM peak, rank 0's SSD -> HBM span bytes, the ring's H2D bytes, one slot's bytes}
std::vector<double> simulate(ExpertOffload o) {
  return test::run_in_child([o] {
    core::ClusterGeneratorOptions g;
    g.nodes = 1, g.gpus_per_node = 2, g.nics_per_node = 1;
    double ring_h2d = 0, slot = 0;
    auto r = sim::simulate(core::generate_cluster(g), 2, [&](core::Runtime& rt) {
      const model::GptMoeConfig c = config(o);
      model::GptMoe gpt(rt, c);
      std::vector<int> ids, targets;
      model::synthetic_batch(c, rt.rank(), 0, ids, targets);
      gpt.set_batch(ids, targets);
      gpt.train_step();
      if (rt.rank() == 0 && gpt.ring())
        ring_h2d = double(gpt.ring()->stats().h2d_bytes), slot = double(gpt.ring()->slot_bytes());
    });
    double span_bytes = 0;
    for (const auto& s : r.ranks[0].spans)
      if (s.kind == core::SpanKind::copy && s.name == "copy ssd->hbm") span_bytes += double(s.bytes);
    return std::vector<double>{r.makespan_s, double(r.ranks[0].memory.peak_bytes(Tier::hbm)), span_bytes, ring_h2d,
                               slot};
  });
}

TEST(ExecModelInSim, RingMemoryCopiesAndSavesHbm) {
  const auto resident = simulate({Tier::hbm, 0, false});
  const auto ahead = simulate({Tier::ssd, 2, true});
  const auto on_demand = simulate({Tier::ssd, 2, false});
  ASSERT_EQ(resident.size(), 5u);
  ASSERT_EQ(ahead.size(), 5u);
  ASSERT_EQ(on_demand.size(), 5u);
  std::printf("simulated step: resident %.3f ms, ring prefetch %.3f ms, ring on demand %.3f ms\n", resident[0] * 1e3,
              ahead[0] * 1e3, on_demand[0] * 1e3);
  const double slot = ahead[4];
  ASSERT_GT(slot, 0);
  // 4 layers forward then backward with 2 slots: layers 0..3 in the forward, 1 and 0 again in the backward.
  EXPECT_EQ(ahead[3], 6 * slot / 2);
  EXPECT_EQ(ahead[2], ahead[3]);
  EXPECT_EQ(on_demand[2], on_demand[3]);
  // Resident: 4 layers x (value, gradient, 2 moments); ring: 2 slots x (value, gradient).
  EXPECT_EQ(resident[1] - ahead[1], 4 * 2 * slot - 2 * slot);
  EXPECT_EQ(ahead[1], on_demand[1]);
  // Prefetch overlaps the copies with compute; on demand the compute stream waits for each one.
  EXPECT_LT(ahead[0], on_demand[0]);
  EXPECT_GE(ahead[0], resident[0]);
}

}  // namespace
}  // namespace moesys::exec
#endif
