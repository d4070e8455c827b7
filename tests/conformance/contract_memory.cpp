// Conformance: the memory ledger (use per tier, peak, use by tag at the peak) and capacity checks.
#include "contract_cases.hpp"
#include "contract_support.hpp"
#include "core/memory.hpp"

namespace moesys::conformance {

using core::Tier;

void LedgerCountsEachTierAndPeak(core::Runtime& rt) {
  constexpr std::uint64_t MiB = 1 << 20;
  const auto& m = rt.memory();
  const std::uint64_t hbm0 = m.in_use_bytes(Tier::hbm), dram0 = m.in_use_bytes(Tier::dram);
  const std::uint64_t peak0 = m.peak_bytes(Tier::hbm);
  auto a = rt.alloc(Tier::hbm, 1 * MiB, "ledger-a");
  auto b = rt.alloc(Tier::hbm, 2 * MiB, "ledger-b");
  auto h = rt.alloc(Tier::dram, 3 * MiB, "ledger-host");
  EXPECT_EQ(m.in_use_bytes(Tier::hbm), hbm0 + 3 * MiB);
  EXPECT_EQ(m.in_use_bytes(Tier::dram), dram0 + 3 * MiB) << "each tier counts its own allocations";
  rt.free(b);
  EXPECT_FALSE(b) << "free resets the handle";
  auto c = rt.alloc(Tier::hbm, 1 * MiB, "ledger-c");
  EXPECT_EQ(m.in_use_bytes(Tier::hbm), hbm0 + 2 * MiB);
  EXPECT_EQ(m.peak_bytes(Tier::hbm), std::max(peak0, hbm0 + 3 * MiB));
  if (peak0 < hbm0 + 3 * MiB) {
    const auto& tags = m.peak_by_tag(Tier::hbm);
    ASSERT_TRUE(tags.count("ledger-b"));
    EXPECT_EQ(tags.at("ledger-b"), 2 * MiB) << "use by tag is taken at the peak";
    EXPECT_FALSE(tags.count("ledger-c")) << "ledger-c came after the peak";
  }
  if (m.capacity_bytes(Tier::ssd) > 0) {
    const std::uint64_t ssd0 = m.in_use_bytes(Tier::ssd);
    auto s = rt.alloc(Tier::ssd, 1 * MiB, "ledger-ssd");
    EXPECT_EQ(m.in_use_bytes(Tier::ssd), ssd0 + MiB);
    rt.free(s);
    EXPECT_EQ(m.in_use_bytes(Tier::ssd), ssd0);
  }
  rt.free(a), rt.free(c), rt.free(h);
  EXPECT_EQ(m.in_use_bytes(Tier::hbm), hbm0);
  EXPECT_EQ(m.in_use_bytes(Tier::dram), dram0);
}

// One byte more than a tier holds fails with OutOfMemory naming the tag, and leaves the ledger as it was.
void TierOverflowThrowsOutOfMemory(core::Runtime& rt) {
  const auto& m = rt.memory();
  for (Tier t : {Tier::hbm, Tier::dram}) {
    const std::uint64_t before = m.in_use_bytes(t);
    const auto too_much = static_cast<std::uint64_t>(m.capacity_bytes(t)) - before + 1;
    try {
      rt.alloc(t, too_much, "overflow-tag");
      ADD_FAILURE() << core::to_string(t) << ": expected OutOfMemory";
    } catch (const core::OutOfMemory& e) {
      EXPECT_NE(std::string(e.what()).find("overflow-tag"), std::string::npos) << e.what();
    }
    EXPECT_EQ(m.in_use_bytes(t), before) << core::to_string(t);
    auto ok = rt.alloc(t, 4096, "after-overflow");  // the tier still works
    EXPECT_TRUE(ok);
    rt.free(ok);
  }
}

}  // namespace moesys::conformance
