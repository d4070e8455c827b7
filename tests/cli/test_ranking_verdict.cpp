// `moesys validate --compare`'s ranking line: the same, reversed, or a measured tie.
#include <gtest/gtest.h>

#include "cli/ranking_verdict.hpp"

using moesys::cli::ranking_verdict;

TEST(RankingVerdict, TheSameWhenEveryRepeatAgreesWithThePrediction) {
  EXPECT_EQ(ranking_verdict("deepspeed", "moesys", 1.2, {1.1, 1.3, 1.05}),
            "the same: moesys faster, predicted and in every measured repeat");
  EXPECT_EQ(ranking_verdict("deepspeed", "moesys", 0.9, {0.95, 0.8}),
            "the same: deepspeed faster, predicted and in every measured repeat");
}

TEST(RankingVerdict, ReversedWhenEveryRepeatDisagrees) {
  EXPECT_EQ(ranking_verdict("deepspeed", "moesys", 0.97, {1.02, 1.04, 1.01}),
            "reversed: deepspeed faster predicted, moesys in every measured repeat");
}

TEST(RankingVerdict, AMeasuredOrderThatChangesBetweenRepeatsIsATie) {
  EXPECT_EQ(ranking_verdict("deepspeed", "moesys", 0.99, {1.02, 0.98, 1.01}),
            "deepspeed faster predicted; measured, the order changes between repeats (a tie within noise)");
}

TEST(RankingVerdict, PresetsAreTakenByPositionNotName) {
  // The same preset twice (a check of the noise): the prediction can still be reversed.
  EXPECT_EQ(ranking_verdict("moesys", "moesys", 1.01, {0.98, 0.99}),
            "reversed: moesys faster predicted, moesys in every measured repeat");
}
