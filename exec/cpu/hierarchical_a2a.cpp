// The resource-aware all-to-all of the paper on the CPU runtime: the steps of core/hierarchical_all_to_all.hpp,
// each an MPI all-to-all(v) of blocks packed by peer. A size exchange inside the node precedes step 1, since a
// member cannot know what its local peers send to its rail; step 2's sizes follow from recv_bytes.
#include <cstring>

#include "core/hierarchical_all_to_all.hpp"
#include "exec/cpu/cpu_runtime.hpp"

namespace moesys::exec::cpu {

namespace {

using Block = core::A2aBlock<std::uint64_t>;

// Blocks packed one after the other in list order (one peer's blocks are adjacent): MPI's counts and displacements.
struct PackedLayout {
  std::vector<int> counts, displs;
};
PackedLayout layout(const std::vector<Block>& blocks, int peers) {
  const auto n = static_cast<std::size_t>(peers);
  PackedLayout p{std::vector<int>(n, 0), std::vector<int>(n, 0)};
  std::uint64_t at = 0;
  for (const Block& b : blocks) {
    auto& count = p.counts[static_cast<std::size_t>(b.peer)];
    if (count == 0) p.displs[static_cast<std::size_t>(b.peer)] = static_cast<int>(at);
    count += static_cast<int>(b.bytes);
    at += b.bytes;
  }
  return p;
}

std::vector<char> pack(const std::vector<Block>& blocks, const void* from) {
  std::vector<char> out;
  const char* src = static_cast<const char*>(from);
  for (const Block& b : blocks) out.insert(out.end(), src + b.offset, src + b.offset + b.bytes);
  return out;
}

}  // namespace

void CpuRuntime::hierarchical_all_to_all(GroupComms& c, const core::Buffer& send,
                                         const std::vector<std::uint64_t>& send_bytes, const core::Buffer& recv,
                                         const std::vector<std::uint64_t>& recv_bytes, const std::string& label) const {
  const int N = c.nodes, P = c.per_node;
  const std::vector<std::uint64_t> sizes_out = core::hierarchical_sizes_out(send_bytes, N, P);
  std::vector<std::uint64_t> sizes_in(sizes_out.size());
  MPI_Request req;
  MPI_Ialltoall(sizes_out.data(), N, MPI_UINT64_T, sizes_in.data(), N, MPI_UINT64_T, c.intra, &req);
  await_requests(&req, 1, options_.timeout_s, label + " (intra-node size exchange)");
  const auto steps = core::hierarchical_steps(send_bytes, recv_bytes, sizes_in, N, P);

  // Step 1: inside the node, into the staging buffer [l'][m].
  const std::vector<char> packed = pack(steps.intra_send, send.data);
  std::vector<char> gathered(steps.staging_bytes);
  PackedLayout out = layout(steps.intra_send, P), in = layout(steps.intra_recv, P);
  MPI_Ialltoallv(packed.data(), out.counts.data(), out.displs.data(), MPI_BYTE, gathered.data(), in.counts.data(),
                 in.displs.data(), MPI_BYTE, c.intra, &req);
  await_requests(&req, 1, options_.timeout_s, label + " (intra-node step)");

  // Step 2: along the rail; blocks arrive in group order.
  const std::vector<char> regrouped = pack(steps.inter_send, gathered.data());
  out = layout(steps.inter_send, N), in = layout(steps.inter_recv, N);
  MPI_Ialltoallv(regrouped.data(), out.counts.data(), out.displs.data(), MPI_BYTE, recv.data, in.counts.data(),
                 in.displs.data(), MPI_BYTE, c.inter, &req);
  await_requests(&req, 1, options_.timeout_s, label + " (inter-node step)");
}

}  // namespace moesys::exec::cpu
