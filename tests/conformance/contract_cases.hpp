#pragma once
// The contract of core::Runtime (core/runtime.hpp) as GoogleTest checks, written once against the interface and
// run by one thin driver per runtime (sim_driver.cpp, cpu_driver.cpp). Each case is a per-rank program: every rank
// of the run calls it with its own runtime, as a policy would. Where buffers carry data (real runtimes) the cases
// check the data; where they carry sizes only (the simulator) they check completion, order and timing of spans.
//
// A driver instantiates every case with
//   #define MOESYS_CONFORMANCE_TEST(name) TEST(ConformanceXyz, name) { run_on_xyz(conformance::name); }
//   MOESYS_CONFORMANCE_CASES(MOESYS_CONFORMANCE_TEST)
// so a new case reaches every runtime at once. The CUDA runtime needs nothing more: the cases move data between
// the host and buffers through DRAM staging copies when a buffer is not host-addressable (contract_support.hpp).
#include "core/runtime.hpp"

#define MOESYS_CONFORMANCE_CASES(X)   \
  X(OneStreamRunsInIssueOrder)        \
  X(StreamWaitOrdersAcrossStreams)    \
  X(WaitOnEventOfAnotherStream)       \
  X(SynchronizeWaitsForEveryStream)   \
  X(CompletedEventsNeedNoWait)        \
  X(AllReduceSums)                    \
  X(ReduceScatterSumsEachBlock)       \
  X(AllGatherConcatenates)            \
  X(AllToAllEqualSizes)               \
  X(AllToAllvUnequalSizes)            \
  X(AllToAllvDeepEpDeliversTheSameBytes) \
  X(CopyEngineCollectivesDeliverTheSameBytes) \
  X(AllToAllWithWrongSizeCountThrows) \
  X(MessagesMatchInIssueOrder)        \
  X(LedgerCountsEachTierAndPeak)      \
  X(TierOverflowThrowsOutOfMemory)    \
  X(OneSpanPerOperation)              \
  X(PhasesBecomeHostSpans)

namespace moesys::conformance {

#define MOESYS_CONFORMANCE_DECLARE(name) void name(core::Runtime& rt);
MOESYS_CONFORMANCE_CASES(MOESYS_CONFORMANCE_DECLARE)
#undef MOESYS_CONFORMANCE_DECLARE

}  // namespace moesys::conformance
