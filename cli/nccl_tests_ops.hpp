#pragma once
// The per-rank operations of nccl-tests that are not one collective call, shared by `moesys collective` and the
// calibration points that were measured with them.
#include <cstdint>

#include "core/runtime.hpp"

namespace moesys::cli {

/// sendrecv_perf: each of the first `ranks` ranks sends `bytes` to the next and receives as many from the
/// previous, both at once (on the communication streams), and waits for both.
void sendrecv_ring(core::Runtime& rt, int ranks, std::uint64_t bytes);

}  // namespace moesys::cli
