#pragma once
// MPI plumbing of the CPU runtime: one sub-communicator per group (and, for the hierarchical all-to-all, its
// intra-node and same-local-rank splits), and waits with a deadline so that a collective that never completes
// becomes a RuntimeFailure naming it instead of a hang.
#include <mpi.h>

#include <map>
#include <string>
#include <vector>

#include "core/cluster.hpp"
#include "core/runtime.hpp"

namespace moesys::exec::cpu {

/// Owns MPI for a process: MPI_Init_thread on construction (unless already initialised), MPI_Finalize on
/// destruction. A process without mpirun runs as a single rank (MPI singleton).
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

/// Completes `n` requests or throws core::RuntimeFailure("<what> did not complete within <timeout> s ...").
void await_requests(MPI_Request* requests, int n, double timeout_s, const std::string& what);

/// The communicators of a group, created on its first use by the members (a collective step over the group).
struct GroupComms {
  MPI_Comm comm = MPI_COMM_NULL;
  // Hierarchical all-to-all: members split by node (intra) and by local index (inter). Valid when every node of
  // the group holds the same number of members, contiguous and in node order.
  bool hierarchical_ok = false;
  int nodes = 0, per_node = 0;
  MPI_Comm intra = MPI_COMM_NULL, inter = MPI_COMM_NULL;
};

class Communicators {
public:
  Communicators(const core::ClusterSpec& spec, int rank) : spec_(spec), rank_(rank) {}
  ~Communicators();
  GroupComms& get(const core::Group& group);

private:
  const core::ClusterSpec& spec_;
  int rank_;
  std::map<std::string, GroupComms> comms_;
};

}  // namespace moesys::exec::cpu
