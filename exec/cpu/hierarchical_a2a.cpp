// The resource-aware all-to-all of the paper on the CPU runtime: members are (node a, local index l).
//   step 1, inside the node: member (a, l) sends to local peer l2 everything it has for (m, l2), every node m;
//   step 2, across nodes among members of one local index: (a, l) sends to (m, l) what it gathered for (m, l).
// Inter-node messages become per_node times fewer and larger. A size exchange inside the node precedes step 1,
// since a member cannot know what its local peers send to its rail; step 2's sizes follow from recv_bytes.
#include <cstring>

#include "exec/cpu/cpu_runtime.hpp"

namespace moesys::exec::cpu {

void CpuRuntime::hierarchical_all_to_all(GroupComms& c, const core::Buffer& send,
                                         const std::vector<std::uint64_t>& send_bytes, const core::Buffer& recv,
                                         const std::vector<std::uint64_t>& recv_bytes, const std::string& label) const {
  const int N = c.nodes, P = c.per_node;
  const auto Zs = [](int v) { return static_cast<std::size_t>(v); };
  std::vector<std::uint64_t> send_off(send_bytes.size(), 0);
  for (std::size_t j = 1; j < send_bytes.size(); ++j) send_off[j] = send_off[j - 1] + send_bytes[j - 1];

  // Sizes: sizes_in[l'][m] = bytes that local member l' has for (m, my local index).
  std::vector<std::uint64_t> sizes_out(Zs(P * N)), sizes_in(Zs(P * N));
  for (int l2 = 0; l2 < P; ++l2)
    for (int m = 0; m < N; ++m) sizes_out[Zs(l2 * N + m)] = send_bytes[Zs(m * P + l2)];
  MPI_Request req;
  MPI_Ialltoall(sizes_out.data(), N, MPI_UINT64_T, sizes_in.data(), N, MPI_UINT64_T, c.intra, &req);
  await_requests(&req, 1, options_.timeout_s, label + " (intra-node size exchange)");

  // Step 1: pack by local destination [l2][m], exchange inside the node into [l'][m].
  std::vector<int> sc(Zs(P)), sd(Zs(P)), rc(Zs(P)), rd(Zs(P));
  std::uint64_t total1 = 0, total2 = 0;
  for (int l = 0; l < P; ++l) {
    std::uint64_t s = 0, r = 0;
    for (int m = 0; m < N; ++m) s += sizes_out[Zs(l * N + m)], r += sizes_in[Zs(l * N + m)];
    sc[Zs(l)] = static_cast<int>(s), rc[Zs(l)] = static_cast<int>(r);
    sd[Zs(l)] = static_cast<int>(total1), rd[Zs(l)] = static_cast<int>(total2);
    total1 += s, total2 += r;
  }
  std::vector<char> packed(total1), gathered(total2);
  const char* src = static_cast<const char*>(send.data);
  std::size_t at = 0;
  for (int l2 = 0; l2 < P; ++l2)
    for (int m = 0; m < N; ++m) {
      const std::size_t j = Zs(m * P + l2);
      std::memcpy(packed.data() + at, src + send_off[j], send_bytes[j]);
      at += send_bytes[j];
    }
  MPI_Ialltoallv(packed.data(), sc.data(), sd.data(), MPI_BYTE, gathered.data(), rc.data(), rd.data(), MPI_BYTE,
                 c.intra, &req);
  await_requests(&req, 1, options_.timeout_s, label + " (intra-node step)");

  // Step 2: regroup [l'][m] -> [m][l'] and exchange along the rail; blocks arrive in group order.
  std::vector<std::uint64_t> off2(Zs(P * N));
  at = 0;
  for (int l = 0; l < P; ++l)
    for (int m = 0; m < N; ++m) off2[Zs(l * N + m)] = at, at += sizes_in[Zs(l * N + m)];
  std::vector<int> sc2(Zs(N)), sd2(Zs(N)), rc2(Zs(N)), rd2(Zs(N));
  at = 0;
  std::uint64_t rat = 0;
  for (int m = 0; m < N; ++m) {
    std::uint64_t s = 0, r = 0;
    for (int l = 0; l < P; ++l) s += sizes_in[Zs(l * N + m)], r += recv_bytes[Zs(m * P + l)];
    sc2[Zs(m)] = static_cast<int>(s), sd2[Zs(m)] = static_cast<int>(at);
    rc2[Zs(m)] = static_cast<int>(r), rd2[Zs(m)] = static_cast<int>(rat);
    at += s, rat += r;
  }
  std::vector<char> regrouped(total2);
  at = 0;
  for (int m = 0; m < N; ++m)
    for (int l = 0; l < P; ++l) {
      const std::uint64_t b = sizes_in[Zs(l * N + m)];
      std::memcpy(regrouped.data() + at, gathered.data() + off2[Zs(l * N + m)], b);
      at += b;
    }
  MPI_Ialltoallv(regrouped.data(), sc2.data(), sd2.data(), MPI_BYTE, recv.data, rc2.data(), rd2.data(), MPI_BYTE,
                 c.inter, &req);
  await_requests(&req, 1, options_.timeout_s, label + " (inter-node step)");
}

}  // namespace moesys::exec::cpu
