#include "exec/cpu/mpi_comms.hpp"

#include <chrono>
#include <functional>
#include <thread>

#include "core/error.hpp"
#include "core/hierarchical_all_to_all.hpp"

namespace moesys::exec::cpu {

MpiSession::MpiSession(int* argc, char*** argv) {
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (!initialised) {
    int provided = 0;
    MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided);
    owner_ = true;
    if (provided < MPI_THREAD_MULTIPLE) {
      MPI_Finalize();
      owner_ = false;
    }
  }
  require_thread_multiple();
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  // Errors come back as codes (turned into RuntimeFailure) rather than aborting inside MPI.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

MpiSession::~MpiSession() {
  int finalised = 0;
  MPI_Finalized(&finalised);
  if (owner_ && !finalised) MPI_Finalize();
}

void require_thread_multiple() {
  int initialised = 0, finalised = 0, provided = MPI_THREAD_SINGLE;
  MPI_Initialized(&initialised);
  MPI_Finalized(&finalised);
  if (initialised && !finalised) MPI_Query_thread(&provided);
  if (!initialised || finalised || provided < MPI_THREAD_MULTIPLE)
    throw core::RuntimeFailure(
        "MPI does not provide MPI_THREAD_MULTIPLE (it gave level " + std::to_string(provided) +
        "): the CPU runtime runs each stream on its own thread; use an MPI library built with thread support");
}

int mpi_tag_bits() {
  int* ub = nullptr;
  int flag = 0;
  MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &ub, &flag);
  const long long limit = flag && ub ? static_cast<long long>(*ub) + 1 : 32768;
  int bits = 0;
  while ((2LL << bits) <= limit) ++bits;
  return bits;
}

void await_requests(MPI_Request* requests, int n, double timeout_s, const std::string& what) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  for (long spins = 0;; ++spins) {
    int done = 0;
    if (MPI_Testall(n, requests, &done, MPI_STATUSES_IGNORE) != MPI_SUCCESS)
      throw core::RuntimeFailure(what + " failed in MPI (a peer rank died or the message sizes disagree)");
    if (done) return;
    if (std::chrono::duration<double>(clock::now() - start).count() > timeout_s)
      throw core::RuntimeFailure(what + " did not complete within " + std::to_string(static_cast<int>(timeout_s)) +
                                 " s: a member never issued it (ranks disagree on the number or order of "
                                 "collectives) or a member died");
    // Spin briefly for latency, then yield the core to the other ranks (CI oversubscribes 2 cores).
    if (spins > 200) std::this_thread::sleep_for(std::chrono::microseconds(spins > 20000 ? 500 : 20));
  }
}

Communicators::Communicators(const core::ClusterSpec& spec, int rank, double timeout_s)
    : spec_(spec), rank_(rank), timeout_s_(timeout_s) {
  if (MPI_Comm_dup(MPI_COMM_WORLD, &p2p_) != MPI_SUCCESS)
    throw core::RuntimeFailure("cannot create the point-to-point communicator");
  MPI_Comm_set_errhandler(p2p_, MPI_ERRORS_RETURN);
}

Communicators::~Communicators() {
  int finalised = 0;
  MPI_Finalized(&finalised);
  if (finalised) return;
  for (auto& [key, c] : comms_)
    for (MPI_Comm* m : {&c.comm, &c.intra, &c.inter})
      if (*m != MPI_COMM_NULL) MPI_Comm_free(m);
  for (auto& [key, m] : groups_) MPI_Comm_free(&m);
  if (p2p_ != MPI_COMM_NULL) MPI_Comm_free(&p2p_);
}

MPI_Comm Communicators::group_comm(const core::Group& group) {
  auto it = groups_.find(group.key());
  if (it != groups_.end()) return it->second;
  MPI_Comm comm = MPI_COMM_NULL;
  MPI_Group world_group = MPI_GROUP_NULL, sub = MPI_GROUP_NULL;
  MPI_Comm_group(MPI_COMM_WORLD, &world_group);
  MPI_Group_incl(world_group, group.size(), group.ranks().data(), &sub);
  // Members create the communicator together; the tag keeps concurrent creations of other groups apart.
  const int tag = static_cast<int>(std::hash<std::string>{}(group.key()) % 30000);
  const int rc = MPI_Comm_create_group(MPI_COMM_WORLD, sub, tag, &comm);
  MPI_Group_free(&sub);
  MPI_Group_free(&world_group);
  if (rc != MPI_SUCCESS) throw core::RuntimeFailure("cannot create the communicator of group [" + group.key() + "]");
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  return groups_.emplace(group.key(), comm).first->second;
}

GroupComms& Communicators::get(const core::Group& group, core::StreamId stream) {
  const auto key = std::make_pair(group.key(), stream);
  auto it = comms_.find(key);
  if (it != comms_.end()) return it->second;
  GroupComms c;
  MPI_Request req = MPI_REQUEST_NULL;
  if (MPI_Comm_idup(group_comm(group), &c.comm, &req) != MPI_SUCCESS)
    throw core::RuntimeFailure("cannot create the communicator of group [" + group.key() + "] for stream " +
                               core::stream_name(stream));
  await_requests(&req, 1, timeout_s_,
                 "creating the communicator of group [" + group.key() + "] for stream " + core::stream_name(stream) +
                     " (rank " + std::to_string(rank_) + ")");
  MPI_Comm_set_errhandler(c.comm, MPI_ERRORS_RETURN);
  // Hierarchical layout (core/hierarchical_all_to_all.hpp): contiguous equal blocks of members per node, in node order.
  std::vector<int> member_nodes;
  for (int r : group.ranks()) member_nodes.push_back(spec_.node_of(r));
  const int per_node = core::hierarchical_per_node(member_nodes);
  c.hierarchical_ok = per_node > 0;
  if (c.hierarchical_ok) {
    const int idx = group.index_of(rank_);
    c.per_node = per_node;
    c.nodes = group.size() / per_node;
    MPI_Comm_split(c.comm, idx / per_node, idx % per_node, &c.intra);
    MPI_Comm_split(c.comm, idx % per_node, idx / per_node, &c.inter);
  }
  return comms_.emplace(key, c).first->second;
}

}  // namespace moesys::exec::cpu
