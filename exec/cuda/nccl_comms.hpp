#pragma once
// NCCL communicators of the CUDA runtime, bootstrapped through MPI: a group's root draws an ncclUniqueId and
// broadcasts it over the group's MPI communicator (exec/cpu/mpi_comms.hpp creates those, and the intra-node and
// same-local-rank splits used by the hierarchical all-to-all). Communicators are non-blocking (config.blocking =
// 0), so no NCCL call can block the host: every call is followed by `settle`, which polls
// ncclCommGetAsyncError until the operation is enqueued and aborts the communicator after the deadline.
#include <mpi.h>
#include <nccl.h>

#include <map>
#include <string>

#include "core/runtime.hpp"
#include "exec/cpu/mpi_comms.hpp"

namespace moesys::exec::cuda {

class NcclComms {
 public:
  struct Entry {
    ncclComm_t comm = nullptr;
    ncclComm_t intra = nullptr, inter = nullptr;  // hierarchical all-to-all, created on first use
    cpu::GroupComms* mpi = nullptr;
  };

  /// Creates the world communicator at once (every rank constructs its runtime together), so that
  /// point-to-point messages, which only two ranks issue, never have to create one.
  NcclComms(const core::ClusterSpec& spec, int rank, int world, double timeout_s);
  ~NcclComms();
  NcclComms(const NcclComms&) = delete;
  NcclComms& operator=(const NcclComms&) = delete;

  /// The communicators of a group; the first call is collective over the group's members.
  Entry& get(const core::Group& group);
  /// Creates the intra-node and same-local-rank communicators of a group that allows them (collective).
  void ensure_hierarchical(Entry& e, const std::string& what);
  ncclComm_t world() const { return world_; }

  /// Waits until the last call on `comm` has left ncclInProgress; throws core::RuntimeFailure naming `what` on an
  /// NCCL error or after the deadline, having aborted every communicator (none can complete work any more).
  void settle(ncclComm_t comm, const std::string& what);
  bool aborted() const { return aborted_; }
  /// Aborts every communicator (a collective timed out: a peer never issued it; nothing can complete anymore).
  void abort_all();

 private:
  ncclComm_t create(MPI_Comm comm, const std::string& what);

  int rank_ = 0;
  double timeout_s_ = 300;
  cpu::Communicators mpi_;
  std::map<std::string, Entry> entries_;
  ncclComm_t world_ = nullptr;
  bool aborted_ = false;
};

const char* nccl_error_text(ncclComm_t comm, ncclResult_t r);

}  // namespace moesys::exec::cuda
