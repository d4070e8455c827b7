// CudaRuntime: NCCL collectives, the hierarchical all-to-all, and point-to-point messages.
//
// Every collective is checked like on the CPU runtime (members compare operation, sequence number and size over
// MPI before NCCL sees it), enqueued with the communicator's non-blocking calls, and then followed by the
// watchdog until its completion event fires: an NCCL error or the deadline aborts the communicators and ends the
// rank with a message naming the collective.
#include <cublas_v2.h>
#include <mpi.h>

#include <numeric>
#include <stdexcept>

#include "core/hierarchical_all_to_all.hpp"
#include "exec/cuda/cuda_check.hpp"
#include "exec/common/runtime_checks.hpp"
#include "exec/cuda/cuda_runtime.hpp"
#include "exec/cuda/nccl_comms.hpp"

namespace moesys::exec::cuda {

namespace {

enum Opcode { kAllReduce = 1, kReduceScatter, kAllGather, kAllToAll };

ncclDataType_t reduce_type(core::Dtype d, const char* what) {
  switch (d) {
    case core::Dtype::fp32:
      return ncclFloat32;
    case core::Dtype::fp16:
      return ncclFloat16;
    case core::Dtype::bf16:
      return ncclBfloat16;
    default:
      throw std::invalid_argument(std::string(what) + ": the CUDA runtime reduces fp32, fp16 and bf16");
  }
}

char* bytes_of(void* p) {
  return static_cast<char*>(p);
}

}  // namespace

void CudaRuntime::settle(ncclComm* comm, const std::string& what) {
  try {
    nccl_->settle(comm, what);
  } catch (const core::RuntimeFailure& e) {
    fail(e.what());
  }
}

template <typename Body>
core::Event CudaRuntime::collective(core::StreamId stream, std::string name, std::uint64_t bytes, ncclComm* comm,
                                    const std::string& label, Body&& body) {
  const cudaStream_t s = cuda_stream(stream);
  EventPtr start;
  if (options_.trace) {
    start = new_event();
    MOESYS_CUDA_CHECK(cudaEventRecord(start.get(), s));
  }
  body(s);
  return track(stream, core::SpanKind::collective, std::move(name), bytes, 0, start, comm, label);
}

std::string CudaRuntime::collective_start(const core::Group& group, int opcode, std::uint64_t bytes, const char* what) {
  check_failed();
  flush_point_to_point();  // messages issued before the collective are enqueued before it
  // A group naming a rank the run does not have is checked first: every rank sees it, so all report the cause
  // (a rank outside the group would otherwise report only that, and one message wins the race to abort).
  for (int r : group.ranks())
    if (r < 0 || r >= size_)
      throw core::InfeasibleError(std::string(what) + ": group [" + group.key() + "] names rank " + std::to_string(r) +
                                  " but the run has " + std::to_string(size_) + " ranks");
  if (group.index_of(rank_) < 0)
    throw std::invalid_argument(std::string(what) + ": rank " + std::to_string(rank_) + " is not in the group");
  const std::uint64_t seq = sequence_[group.key()]++;
  const std::string label = std::string(what) + " #" + std::to_string(seq) + " on group [" + group.key() + "] (rank " +
                            std::to_string(rank_) + ")";
  NcclComms::Entry& e = nccl_->get(group);
  if (options_.check_collectives && group.size() > 1) {
    // max over members of (x, -x) gives max and -min at once: equal on every member iff all agree.
    std::int64_t sig[6] = {opcode, static_cast<std::int64_t>(seq), static_cast<std::int64_t>(bytes)}, out[6];
    for (int i = 0; i < 3; ++i) sig[3 + i] = -sig[i];
    MPI_Request req;
    MPI_Iallreduce(sig, out, 6, MPI_INT64_T, MPI_MAX, e.mpi->comm, &req);
    try {
      cpu::await_requests(&req, 1, options_.timeout_s, label);
    } catch (const core::RuntimeFailure& err) {
      fail(err.what());
    }
    for (int i = 0; i < 3; ++i)
      if (out[i] != -out[3 + i])
        fail(label +
             ": members disagree on the collective (operation, sequence number or size differ): ranks "
             "issued different sequences of collectives");
  }
  return label;
}

core::Event CudaRuntime::all_reduce(core::StreamId stream, const core::Group& group, const core::Buffer& buffer,
                                    std::uint64_t bytes, core::Dtype dtype, core::CollectiveAlgo) {
  const ncclDataType_t type = reduce_type(dtype, "all_reduce");
  const std::string label = collective_start(group, kAllReduce, bytes, "all_reduce");
  ncclComm_t comm = nccl_->get(group).comm;
  void* p = address(buffer);
  return collective(stream, "all_reduce", bytes, comm, label, [&](cudaStream_t s) {
    MOESYS_NCCL_CHECK(ncclAllReduce(p, p, bytes / std::uint64_t(core::dtype_bytes(dtype)), type, ncclSum, comm, s));
    settle(comm, label);
  });
}

core::Event CudaRuntime::reduce_scatter(core::StreamId stream, const core::Group& group, const core::Buffer& send,
                                        const core::Buffer& recv, std::uint64_t bytes, core::Dtype dtype,
                                        core::CollectiveAlgo) {
  const ncclDataType_t type = reduce_type(dtype, "reduce_scatter");
  const std::string label = collective_start(group, kReduceScatter, bytes, "reduce_scatter");
  ncclComm_t comm = nccl_->get(group).comm;
  void *sp = address(send), *rp = address(recv);
  const std::uint64_t count = bytes / std::uint64_t(core::dtype_bytes(dtype)) / std::uint64_t(group.size());
  return collective(stream, "reduce_scatter", bytes, comm, label, [&](cudaStream_t s) {
    MOESYS_NCCL_CHECK(ncclReduceScatter(sp, rp, count, type, ncclSum, comm, s));
    settle(comm, label);
  });
}

core::Event CudaRuntime::all_gather(core::StreamId stream, const core::Group& group, const core::Buffer& send,
                                    const core::Buffer& recv, std::uint64_t bytes, core::CollectiveAlgo) {
  const std::string label = collective_start(group, kAllGather, bytes, "all_gather");
  ncclComm_t comm = nccl_->get(group).comm;
  void *sp = address(send), *rp = address(recv);
  return collective(stream, "all_gather", bytes, comm, label, [&](cudaStream_t s) {
    MOESYS_NCCL_CHECK(ncclAllGather(sp, rp, bytes / std::uint64_t(group.size()), ncclUint8, comm, s));
    settle(comm, label);
  });
}

core::Event CudaRuntime::all_to_all(core::StreamId stream, const core::Group& group, const core::Buffer& send,
                                    const std::vector<std::uint64_t>& send_bytes, const core::Buffer& recv,
                                    const std::vector<std::uint64_t>& recv_bytes, core::CollectiveAlgo algo,
                                    const core::NodeTraffic&) {
  // deepep / deepep-ll: DeepEP's kernels are not part of this runtime; NCCL moves the same bytes directly.
  const auto n = static_cast<std::size_t>(group.size());
  const std::uint64_t total = check_all_to_all_sizes(group, send, send_bytes, recv, recv_bytes);
  const std::string label = collective_start(group, kAllToAll, 0, "all_to_all");
  NcclComms::Entry& e = nccl_->get(group);
  const bool hier =
      algo == core::CollectiveAlgo::hierarchical && e.mpi->hierarchical_ok && e.mpi->nodes > 1 && e.mpi->per_node > 1;
  if (hier) {
    try {
      nccl_->ensure_hierarchical(e, label);
    } catch (const core::RuntimeFailure& err) {
      fail(err.what());
    }
    return collective(stream, "all_to_all/hierarchical", total, e.inter, label, [&](cudaStream_t) {
      hierarchical_all_to_all(stream, group, send, send_bytes, recv, recv_bytes, label);
    });
  }
  char *sp = bytes_of(address(send)), *rp = bytes_of(address(recv));
  return collective(stream, "all_to_all/direct", total, e.comm, label, [&](cudaStream_t s) {
    // One NCCL group of sends and receives: NCCL runs them concurrently. Empty blocks are skipped on both sides
    // (a sender's send_bytes[j] equals receiver j's recv_bytes[i]).
    MOESYS_NCCL_CHECK(ncclGroupStart());
    std::uint64_t so = 0, ro = 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (send_bytes[i]) MOESYS_NCCL_CHECK(ncclSend(sp + so, send_bytes[i], ncclUint8, int(i), e.comm, s));
      if (recv_bytes[i]) MOESYS_NCCL_CHECK(ncclRecv(rp + ro, recv_bytes[i], ncclUint8, int(i), e.comm, s));
      so += send_bytes[i], ro += recv_bytes[i];
    }
    MOESYS_NCCL_CHECK(ncclGroupEnd());
    settle(e.comm, label);
  });
}

// The resource-aware all-to-all of the paper: the steps of core/hierarchical_all_to_all.hpp. NCCL matches the
// several messages between one pair in issue order, so no packing kernel is needed: blocks are sent from and
// received into their offsets. A size exchange over MPI inside the node precedes step 1.
void CudaRuntime::hierarchical_all_to_all(core::StreamId stream, const core::Group& group, const core::Buffer& send,
                                          const std::vector<std::uint64_t>& send_bytes, const core::Buffer& recv,
                                          const std::vector<std::uint64_t>& recv_bytes, const std::string& label) {
  NcclComms::Entry& e = nccl_->get(group);
  const int N = e.mpi->nodes, P = e.mpi->per_node;
  const cudaStream_t s = cuda_stream(stream);
  const std::vector<std::uint64_t> sizes_out = core::hierarchical_sizes_out(send_bytes, N, P);
  std::vector<std::uint64_t> sizes_in(sizes_out.size());
  MPI_Request req;
  MPI_Ialltoall(sizes_out.data(), N, MPI_UINT64_T, sizes_in.data(), N, MPI_UINT64_T, e.mpi->intra, &req);
  try {
    cpu::await_requests(&req, 1, options_.timeout_s, label + " (intra-node size exchange)");
  } catch (const core::RuntimeFailure& err) {
    fail(err.what());
  }
  const auto steps = core::hierarchical_steps(send_bytes, recv_bytes, sizes_in, N, P);
  void* scratch = nullptr;
  MOESYS_CUDA_CHECK(cudaMallocAsync(&scratch, std::max<std::uint64_t>(steps.staging_bytes, 16), s));
  char *g = bytes_of(scratch), *sp = bytes_of(address(send)), *rp = bytes_of(address(recv));

  MOESYS_NCCL_CHECK(ncclGroupStart());  // step 1: inside the node, into the staging buffer [l'][m]
  for (const auto& b : steps.intra_send)
    MOESYS_NCCL_CHECK(ncclSend(sp + b.offset, b.bytes, ncclUint8, b.peer, e.intra, s));
  for (const auto& b : steps.intra_recv)
    MOESYS_NCCL_CHECK(ncclRecv(g + b.offset, b.bytes, ncclUint8, b.peer, e.intra, s));
  MOESYS_NCCL_CHECK(ncclGroupEnd());
  settle(e.intra, label + " (intra-node step)");

  MOESYS_NCCL_CHECK(ncclGroupStart());  // step 2: along the rail; blocks from node m arrive in local order
  for (const auto& b : steps.inter_send)
    MOESYS_NCCL_CHECK(ncclSend(g + b.offset, b.bytes, ncclUint8, b.peer, e.inter, s));
  for (const auto& b : steps.inter_recv)
    MOESYS_NCCL_CHECK(ncclRecv(rp + b.offset, b.bytes, ncclUint8, b.peer, e.inter, s));
  MOESYS_NCCL_CHECK(ncclGroupEnd());
  settle(e.inter, label + " (inter-node step)");
  MOESYS_CUDA_CHECK(cudaFreeAsync(scratch, s));
}

// ---- point-to-point ----
// NCCL has no tags: messages between two ranks match in issue order. Sends and receives are collected and
// enqueued together as one NCCL group at the next wait (or before the next operation on their stream), so that
// crossed pairs (each rank sends to the other on one stream and receives on another) cannot deadlock.

core::Event CudaRuntime::send(core::StreamId stream, int peer, const core::Buffer& buffer, std::uint64_t bytes,
                              int tag) {
  check_failed();
  if (peer < 0 || peer >= size_ || bytes > buffer.bytes)
    throw std::invalid_argument("send of " + std::to_string(bytes) + " bytes to rank " + std::to_string(peer) +
                                ": no such rank or larger than the buffer");
  (void)tag;
  p2p_.push_back({true, peer, address(buffer), bytes, stream, next_event_++, 0});
  return core::Event{p2p_.back().event};
}

core::Event CudaRuntime::recv(core::StreamId stream, int peer, const core::Buffer& buffer, std::uint64_t bytes,
                              int tag) {
  check_failed();
  if (peer < 0 || peer >= size_ || bytes > buffer.bytes)
    throw std::invalid_argument("receive of " + std::to_string(bytes) + " bytes from rank " + std::to_string(peer) +
                                ": no such rank or larger than the buffer");
  (void)tag;
  p2p_.push_back({false, peer, address(buffer), bytes, stream, next_event_++, 0});
  return core::Event{p2p_.back().event};
}

bool CudaRuntime::has_point_to_point(core::StreamId stream, std::uint64_t event) const {
  for (const auto& p : p2p_)
    if ((stream >= 0 && p.stream == stream) || (event != 0 && p.event == event)) return true;
  return false;
}

void CudaRuntime::flush_point_to_point() {
  if (p2p_.empty()) return;
  const std::vector<PointToPoint> list = std::move(p2p_);
  p2p_.clear();
  ncclComm_t w = nccl_->world();
  std::vector<EventPtr> starts(list.size());
  for (std::size_t i = 0; i < list.size() && options_.trace; ++i) {
    starts[i] = new_event();
    MOESYS_CUDA_CHECK(cudaEventRecord(starts[i].get(), cuda_stream(list[i].stream)));
  }
  const std::string what = "point-to-point messages of rank " + std::to_string(rank_);
  MOESYS_NCCL_CHECK(ncclGroupStart());
  for (const auto& p : list) {
    const cudaStream_t s = cuda_stream(p.stream);
    if (p.is_send)
      MOESYS_NCCL_CHECK(ncclSend(p.ptr, p.bytes, ncclUint8, p.peer, w, s));
    else
      MOESYS_NCCL_CHECK(ncclRecv(p.ptr, p.bytes, ncclUint8, p.peer, w, s));
  }
  MOESYS_NCCL_CHECK(ncclGroupEnd());
  settle(w, what);
  for (std::size_t i = 0; i < list.size(); ++i) {
    const auto& p = list[i];
    const std::string one = std::string(p.is_send ? "send of " : "receive of ") + std::to_string(p.bytes) + " bytes " +
                            (p.is_send ? "from rank " : "on rank ") + std::to_string(rank_) +
                            (p.is_send ? " to rank " : " from rank ") + std::to_string(p.peer);
    track(p.stream, core::SpanKind::comm, p.is_send ? "send" : "recv", p.bytes, 0, starts[i], w, one, p.event);
  }
}

}  // namespace moesys::exec::cuda
