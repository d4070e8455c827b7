// What the simulator charges for attention (AttentionOp::flop and bytes), including the KV-cache shapes of
// generation where the queries are fewer than the keys.
#include <gtest/gtest.h>

#include "core/runtime.hpp"

namespace moesys::core {
namespace {

AttentionOp shape(std::int64_t sq, std::int64_t skv, bool causal) {
  AttentionOp a;
  a.batch = 2, a.heads = 4, a.head_dim = 64, a.seq_q = sq, a.seq_kv = skv, a.causal = causal;
  a.dtype = Dtype::fp16;
  return a;
}

TEST(AttentionCost, CausalSquareIsHalfTheDenseScores) {
  const double dense = 4.0 * 2 * 4 * 128 * 128 * 64;
  EXPECT_DOUBLE_EQ(shape(128, 128, false).flop(), dense);
  EXPECT_DOUBLE_EQ(shape(128, 128, true).flop(), dense / 2);
  AttentionOp b = shape(128, 128, true);
  b.backward = true;
  EXPECT_DOUBLE_EQ(b.flop(), 2.5 * dense / 2);
}

TEST(AttentionCost, DecodeQuerySeesTheWholeContext) {
  // One query at the end of a 1000-token context: (about) every key is visible, not half of them.
  const double per_pair = 4.0 * 2 * 4 * 64;
  EXPECT_NEAR(shape(1, 1000, true).flop(), per_pair * 1000, per_pair);
  EXPECT_DOUBLE_EQ(shape(1, 1000, false).flop(), per_pair * 1000);
}

TEST(AttentionCost, PrefillAfterContextIsATrapezoid) {
  // 100 new queries after 300 cached positions: 100 * 300 full rows plus half of a 100 x 100 square.
  const double per_pair = 4.0 * 2 * 4 * 64;
  EXPECT_DOUBLE_EQ(shape(100, 400, true).flop(), per_pair * (100.0 * 300 + 0.5 * 100 * 100));
}

TEST(AttentionCost, BytesReadQueriesAndOutputsOnceKeysAndValuesOnce) {
  const AttentionOp a = shape(1, 1000, true);
  EXPECT_DOUBLE_EQ(a.bytes(), (2.0 * 2 * 4 * 1 * 64 + 2.0 * 2 * 4 * 1000 * 64) * 2);
}

}  // namespace
}  // namespace moesys::core
