#include "exec/cuda/nccl_comms.hpp"

#include <chrono>
#include <thread>

#include "exec/cuda/cuda_check.hpp"

namespace moesys::exec::cuda {

const char* nccl_error_text(ncclComm_t comm, ncclResult_t r) {
  const char* last = comm ? ncclGetLastError(comm) : nullptr;
  return last && *last ? last : ncclGetErrorString(r);
}

NcclComms::NcclComms(const core::ClusterSpec& spec, int rank, int world, double timeout_s)
    : rank_(rank), timeout_s_(timeout_s), mpi_(spec, rank, timeout_s) {
  Entry& e = get(core::Group::world(world));
  world_ = e.comm;
}

NcclComms::~NcclComms() {
  // Finalize flushes outstanding work; a failure there aborts every communicator (settle), after which none is
  // left to destroy.
  for (auto& [key, e] : entries_)
    for (ncclComm_t* c : {&e.comm, &e.intra, &e.inter}) {
      if (aborted_) return;
      if (!*c) continue;
      try {
        ncclCommFinalize(*c);
        settle(*c, "NCCL communicator finalisation");
      } catch (...) {
        return;
      }
      ncclCommDestroy(*c);
      *c = nullptr;
    }
}

void NcclComms::settle(ncclComm_t comm, const std::string& what) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  for (long spins = 0;; ++spins) {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t r = ncclCommGetAsyncError(comm, &state);
    if (r != ncclSuccess) state = r;
    if (state == ncclSuccess) return;
    if (state != ncclInProgress) {
      const std::string text = nccl_error_text(comm, state);
      abort_all();  // a communicator in error cannot be used again, nor can collectives that involve it
      throw core::RuntimeFailure(what + " failed in NCCL: " + ncclGetErrorString(state) + ": " + text);
    }
    if (std::chrono::duration<double>(clock::now() - start).count() > timeout_s_) {
      abort_all();
      throw core::RuntimeFailure(what + " did not complete within " + std::to_string(static_cast<int>(timeout_s_)) +
                                 " s: a member never issued it (ranks disagree on the number or order of "
                                 "collectives) or a member died; NCCL communicators aborted");
    }
    if (spins > 100) std::this_thread::sleep_for(std::chrono::microseconds(spins > 10000 ? 500 : 20));
  }
}

ncclComm_t NcclComms::create(MPI_Comm comm, const std::string& what) {
  int r = 0, n = 1;
  MPI_Comm_rank(comm, &r);
  MPI_Comm_size(comm, &n);
  ncclUniqueId id{};
  if (r == 0) MOESYS_NCCL_CHECK(ncclGetUniqueId(&id));
  MPI_Request req;
  MPI_Ibcast(&id, sizeof id, MPI_BYTE, 0, comm, &req);
  cpu::await_requests(&req, 1, timeout_s_, what + " (ncclUniqueId broadcast over MPI)");
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t c = nullptr;
  MOESYS_NCCL_CHECK(ncclCommInitRankConfig(&c, n, id, r, &config));
  settle(c, what + " (NCCL communicator set-up)");
  return c;
}

NcclComms::Entry& NcclComms::get(const core::Group& group) {
  auto it = entries_.find(group.key());
  if (it != entries_.end()) return it->second;
  Entry e;
  e.mpi = &mpi_.get(group, core::streams::kComm);  // the MPI side only bootstraps NCCL: one per group
  e.comm = create(e.mpi->comm, "communicator of group [" + group.key() + "] on rank " + std::to_string(rank_));
  return entries_.emplace(group.key(), e).first->second;
}

void NcclComms::ensure_hierarchical(Entry& e, const std::string& what) {
  if (e.intra) return;
  e.intra = create(e.mpi->intra, what + " (intra-node communicator)");
  e.inter = create(e.mpi->inter, what + " (same-local-rank communicator)");
}

void NcclComms::abort_all() {
  if (aborted_) return;
  aborted_ = true;
  for (auto& [key, e] : entries_)
    for (ncclComm_t* c : {&e.comm, &e.intra, &e.inter})
      if (*c) ncclCommAbort(*c), *c = nullptr;
  world_ = nullptr;
}

}  // namespace moesys::exec::cuda
