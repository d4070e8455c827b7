#pragma once
// MPI plumbing of the CPU runtime: communicators per (group, stream) (and, for the hierarchical all-to-all, their
// intra-node and same-local-rank splits), one for point-to-point messages, and waits with a deadline so that a
// collective that never completes becomes a RuntimeFailure naming it instead of a hang.
//
// Every stream runs on its own thread, so two streams can have collectives of one group in flight at once, and
// the threads of different ranks may start them in different orders. MPI matches collectives on a communicator
// in the order they are called, so each (group, stream) gets its own communicator (a duplicate of the group's),
// as NCCL programs give each stream its own communicator: the order within one stream is the issue order on
// every member. Communicators are created on the host thread, in issue order, which is the same on every member.
#include <mpi.h>

#include <map>
#include <string>
#include <vector>

#include "core/cluster.hpp"
#include "core/runtime.hpp"

namespace moesys::exec::cpu {

/// Owns MPI for a process: MPI_Init_thread on construction (unless already initialised), MPI_Finalize on
/// destruction. A process without mpirun runs as a single rank (MPI singleton). The CPU runtime calls MPI from
/// one thread per stream, so MPI must provide MPI_THREAD_MULTIPLE; construction throws core::RuntimeFailure if the
/// library gives less.
class MpiSession {
public:
  MpiSession(int* argc = nullptr, char*** argv = nullptr);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
  int rank() const { return rank_; }
  int size() const { return size_; }

private:
  bool owner_ = false;
  int rank_ = 0, size_ = 1;
};

/// Throws core::RuntimeFailure unless MPI is initialised with MPI_THREAD_MULTIPLE.
void require_thread_multiple();

/// Bits an MPI tag may use: log2(MPI_TAG_UB + 1) (at least 15 by the MPI standard, 31 in OpenMPI).
int mpi_tag_bits();

/// Completes `n` requests or throws core::RuntimeFailure("<what> did not complete within <timeout> s ...").
void await_requests(MPI_Request* requests, int n, double timeout_s, const std::string& what);

/// The communicators of a (group, stream), created on its first use by the members (a collective step over the
/// group).
struct GroupComms {
  MPI_Comm comm = MPI_COMM_NULL;
  // Hierarchical all-to-all: members split by node (intra) and by local index (inter). Valid when every node of
  // the group holds the same number of members, contiguous and in node order.
  bool hierarchical_ok = false;
  int nodes = 0, per_node = 0;
  MPI_Comm intra = MPI_COMM_NULL, inter = MPI_COMM_NULL;
};

/// Host thread only. Entries never move, so a worker may keep a reference to one while the host adds others.
class Communicators {
public:
  /// Collective over MPI_COMM_WORLD (creates the point-to-point communicator).
  Communicators(const core::ClusterSpec& spec, int rank, double timeout_s);
  ~Communicators();
  Communicators(const Communicators&) = delete;
  Communicators& operator=(const Communicators&) = delete;
  GroupComms& get(const core::Group& group, core::StreamId stream);
  /// Point-to-point messages of every stream (a duplicate of MPI_COMM_WORLD, apart from the program's own use).
  MPI_Comm p2p() const { return p2p_; }

private:
  MPI_Comm group_comm(const core::Group& group);

  const core::ClusterSpec& spec_;
  int rank_;
  double timeout_s_;
  MPI_Comm p2p_ = MPI_COMM_NULL;
  std::map<std::string, MPI_Comm> groups_;                           // by group key
  std::map<std::pair<std::string, core::StreamId>, GroupComms> comms_;  // by (group key, stream)
};

}  // namespace moesys::exec::cpu
