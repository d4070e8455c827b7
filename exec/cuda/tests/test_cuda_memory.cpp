// The CUDA runtime's memory: freeing does not synchronise the device, work queued before a free still sees the
// buffer, and a freed block is reused and starts zeroed (the caching allocator in cuda_runtime.cpp).
#include <gtest/gtest.h>

#include <cstring>

#include "cuda_test_util.hpp"

namespace moesys::exec::cuda {
namespace {

using core::streams::kD2H;
using core::streams::kH2D;

TEST(CudaMemory, QueuedWorkOutlivesTheFreeAndTheBlockComesBackZeroed) {
  CudaRuntime& rt = testing::gpu();
  const std::uint64_t bytes = 4 << 20;
  core::Buffer pattern = rt.alloc(core::Tier::dram, bytes, "t"), back = rt.alloc(core::Tier::dram, bytes, "t");
  std::memset(pattern.data, 9, bytes);
  core::Buffer device = rt.alloc(core::Tier::hbm, bytes, "t");
  void* block = rt.address(device);
  rt.stream_wait(kD2H, rt.copy(kH2D, device, pattern, bytes));
  const core::Event read = rt.copy(kD2H, back, device, bytes);
  rt.free(device);  // the copies above are still queued: the block must stay theirs until they have run
  EXPECT_EQ(rt.memory().in_use_bytes(core::Tier::hbm), 0u) << "the ledger counts the buffer free at once";
  rt.wait(read);
  const auto* b = static_cast<const unsigned char*>(back.data);
  EXPECT_TRUE(b[0] == 9 && b[bytes / 2] == 9 && b[bytes - 1] == 9);

  rt.synchronize();
  core::Buffer again = rt.alloc(core::Tier::hbm, bytes, "t");
  EXPECT_EQ(rt.address(again), block) << "the freed block of the same size is reused";
  rt.wait(rt.copy(kD2H, back, again, bytes));
  EXPECT_TRUE(b[0] == 0 && b[bytes / 2] == 0 && b[bytes - 1] == 0);
  rt.free(again);
  rt.free(pattern);
  rt.free(back);
  rt.synchronize();
}

}  // namespace
}  // namespace moesys::exec::cuda
