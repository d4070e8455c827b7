#include "cli/nccl_tests_ops.hpp"

namespace moesys::cli {

void sendrecv_ring(core::Runtime& rt, int ranks, std::uint64_t bytes) {
  const int r = rt.rank();
  if (r >= ranks) return;
  const core::Buffer none;
  const core::Event sent = rt.send(core::streams::kComm, (r + 1) % ranks, none, bytes, 0);
  const core::Event received = rt.recv(core::streams::kComm2, (r + ranks - 1) % ranks, none, bytes, 0);
  rt.wait(sent);
  rt.wait(received);
}

}  // namespace moesys::cli
