// What a compute slot's cache holds (sim/operand_cache.hpp): least recently used operand bytes up to a capacity,
// views of one allocation merged, and which slot's cache a rank's kernel lands on.
#include <gtest/gtest.h>

#include "sim/operand_cache.hpp"

using namespace moesys;
using sim::Extent;
using sim::OperandCache;

namespace {
Extent range(std::uint64_t id, std::uint64_t begin, std::uint64_t end, int rank = 0) { return {rank, id, begin, end}; }

core::Buffer view(std::uint64_t id, std::uint64_t offset, std::uint64_t bytes) {
  core::Buffer b;
  b.id = id, b.offset = offset, b.bytes = bytes;
  return b;
}
}  // namespace

TEST(OperandCache, WhatAKernelTouchedIsHeldUntilNewerBytesPushItOut) {
  OperandCache cache(1000);
  EXPECT_EQ(cache.held_share({range(1, 0, 400)}), 0.0);  // nothing touched yet
  cache.touch({range(1, 0, 400)});
  EXPECT_EQ(cache.held_share({range(1, 0, 400)}), 1.0);
  EXPECT_EQ(cache.held_share({range(1, 0, 400), range(2, 0, 400)}), 0.5);  // half of what the kernel reads
  cache.touch({range(2, 0, 400)});
  cache.touch({range(3, 0, 400)});  // 1200 bytes touched: the oldest 200 of buffer 1 leave
  EXPECT_EQ(cache.held_bytes(), 1000);
  EXPECT_EQ(cache.held_share({range(1, 0, 400)}), 0.5);
  EXPECT_EQ(cache.held_share({range(3, 0, 400)}), 1.0);
}

TEST(OperandCache, TouchingAgainMakesBytesTheNewestWithoutCountingThemTwice) {
  OperandCache cache(1000);
  cache.touch({range(1, 0, 400)});
  cache.touch({range(2, 0, 400)});
  cache.touch({range(1, 100, 300)});  // the middle of buffer 1 again: split, not duplicated
  EXPECT_EQ(cache.held_bytes(), 800);
  cache.touch({range(3, 0, 400)});  // 200 bytes leave: buffer 1's older ends first (they are the oldest)
  EXPECT_EQ(cache.held_bytes(), 1000);
  EXPECT_EQ(cache.held_share({range(1, 100, 300)}), 1.0);
  EXPECT_EQ(cache.held_share({range(2, 0, 400)}), 1.0);
  EXPECT_EQ(cache.held_share({range(1, 0, 100), range(1, 300, 400)}), 0.0);
}

TEST(OperandCache, AKernelLargerThanTheCacheIsHotWhenAllThatFitsIsHeld) {
  OperandCache cache(1000);
  cache.touch({range(1, 0, 3000)});  // only the last 1000 bytes it streamed through stay
  EXPECT_EQ(cache.held_bytes(), 1000);
  EXPECT_EQ(cache.held_share({range(1, 0, 3000)}), 1.0);  // as much as could be held is: the hot rate
  EXPECT_EQ(cache.held_share({range(1, 2000, 3000)}), 1.0);
  EXPECT_EQ(cache.held_share({range(1, 0, 1000)}), 0.0);
}

TEST(OperandCache, ACapacityOfAFractionOfAByteHoldsWholeBytes) {
  OperandCache cache(1000.7);  // e.g. a cache size in MiB that is not a whole number of bytes
  cache.touch({range(1, 0, 800)});
  cache.touch({range(2, 0, 800)});
  EXPECT_EQ(cache.held_bytes(), 1000);
  EXPECT_EQ(cache.held_share({range(1, 600, 800)}), 1.0);  // the first buffer's last 200 bytes
}

TEST(OperandCache, BytesAnotherAgentWroteAreHeldNoMore) {
  OperandCache cache(1000);
  cache.touch({range(1, 0, 400), range(2, 0, 400)});
  cache.forget({range(1, 100, 200)});  // a copy wrote the middle of buffer 1
  EXPECT_EQ(cache.held_bytes(), 700);
  EXPECT_EQ(cache.held_share({range(1, 0, 400)}), 0.75);
  EXPECT_EQ(cache.held_share({range(2, 0, 400)}), 1.0);
}

TEST(OperandCache, RanksBuffersAreApart) {
  OperandCache cache(1000);
  cache.touch({range(1, 0, 400, 0)});
  EXPECT_EQ(cache.held_share({range(1, 0, 400, 1)}), 0.0);  // rank 1's buffer 1 is other memory
}

TEST(OperandCache, AKernelsOverlappingViewsCountOnce) {
  core::TensorOp op;
  op.in = {view(7, 0, 100), view(7, 50, 100)};  // overlapping views of one allocation
  op.out = {view(8, 0, 10), view(7, 0, 100)};   // another buffer, and in place (the latest operand)
  const std::vector<Extent> e = sim::operand_extents(core::Kernel{op}, 3);
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].id, 8u);
  EXPECT_EQ(e[0].bytes(), 10u);
  EXPECT_EQ(e[1].rank, 3);
  EXPECT_EQ(e[1].id, 7u);
  EXPECT_EQ(e[1].begin, 0u);
  EXPECT_EQ(e[1].end, 150u);

  // A view that bridges two disjoint ones merges all three into one range.
  op.in = {view(9, 0, 10), view(9, 20, 10)};
  op.out = {view(9, 5, 20)};
  const std::vector<Extent> bridged = sim::operand_extents(core::Kernel{op}, 0);
  ASSERT_EQ(bridged.size(), 1u);
  EXPECT_EQ(bridged[0].begin, 0u);
  EXPECT_EQ(bridged[0].end, 30u);
}

TEST(SlotCaches, ARankReturnsToItsSlotWhileItIsFree) {
  sim::SlotCaches slots(2, 1000);
  OperandCache& first = slots.take(0);
  first.touch({range(1, 0, 100)});
  slots.give(first);
  OperandCache& again = slots.take(0);
  EXPECT_EQ(&again, &first);
  OperandCache& other = slots.take(1);  // rank 0 holds its slot: rank 1 gets the other one
  EXPECT_NE(&other, &first);
  slots.give(again);
  slots.give(other);
  EXPECT_EQ(&slots.take(2), &first);  // a new rank: the slot released longest ago
}

TEST(SlotCaches, MoreKernelsThanSlotsIsABug) {
  sim::SlotCaches slots(1, 1000);
  slots.take(0);
  EXPECT_THROW(slots.take(1), std::logic_error);
  OperandCache stranger(10);
  EXPECT_THROW(slots.give(stranger), std::logic_error);
}
