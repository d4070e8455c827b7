// CpuRuntime: collectives and point-to-point messages. Everything that can be checked is checked at issue, on
// the host thread, where it throws; the MPI calls run on the stream's worker, each wait with the deadline.
#include <numeric>
#include <stdexcept>

#include "core/error.hpp"
#include "exec/common/runtime_checks.hpp"
#include "exec/cpu/cpu_runtime.hpp"

namespace moesys::exec::cpu {

namespace {
enum Opcode { kAllReduce = 1, kReduceScatter, kAllGather, kAllToAll };

int as_int(std::uint64_t v, const char* what) {
  if (v > static_cast<std::uint64_t>(INT32_MAX)) throw std::invalid_argument(std::string(what) + ": over 2 GiB");
  return static_cast<int>(v);
}

OpSpec collective_op(const char* name, std::uint64_t bytes) {
  OpSpec op;
  op.kind = core::SpanKind::collective;
  op.name = name;
  op.bytes = bytes;
  return op;
}
}  // namespace

CpuRuntime::CollectiveCall CpuRuntime::collective_call(core::StreamId stream, const core::Group& group, int opcode,
                                                       std::uint64_t bytes, const char* what) {
  // A group naming a rank the run does not have is checked first: every rank sees it, so all report the cause
  // (a rank outside the group would otherwise report only that, and one message wins the race to abort).
  for (int r : group.ranks())
    if (r < 0 || r >= size_)
      throw core::InfeasibleError(std::string(what) + ": group [" + group.key() + "] names rank " + std::to_string(r) +
                                  " but the run has " + std::to_string(size_) + " ranks");
  if (group.index_of(rank_) < 0)
    throw std::invalid_argument(std::string(what) + ": rank " + std::to_string(rank_) + " is not in the group");
  engine_->check();  // a failure on a worker comes first: it may be why this rank's collectives go wrong
  CollectiveCall call;
  call.opcode = opcode;
  call.bytes = bytes;
  call.sequence = sequence_[{group.key(), stream}]++;
  call.label = std::string(what) + " #" + std::to_string(call.sequence) + " on group [" + group.key() + "] stream " +
               core::stream_name(stream) + " (rank " + std::to_string(rank_) + ")";
  call.comms = &comms_->get(group, stream);
  return call;
}

void CpuRuntime::check_signature(const CollectiveCall& call) const {
  int members = 1;
  MPI_Comm_size(call.comms->comm, &members);
  if (!options_.check_collectives || members < 2) return;
  // max over members of (x, -x) gives max and -min at once: equal on every member iff all agree.
  std::int64_t sig[6] = {call.opcode, call.sequence, static_cast<std::int64_t>(call.bytes)}, out[6];
  for (int i = 0; i < 3; ++i) sig[3 + i] = -sig[i];
  MPI_Request req;
  MPI_Iallreduce(sig, out, 6, MPI_INT64_T, MPI_MAX, call.comms->comm, &req);
  await_requests(&req, 1, options_.timeout_s, call.label);
  for (int i = 0; i < 3; ++i)
    if (out[i] != -out[3 + i])
      throw core::RuntimeFailure(call.label +
                                 ": members disagree on the collective (operation, sequence number or "
                                 "size differ): ranks issued different sequences of collectives");
}

core::Event CpuRuntime::all_reduce(core::StreamId stream, const core::Group& group, const core::Buffer& buffer,
                                   std::uint64_t bytes, core::Dtype dtype, core::CollectiveAlgo) {
  if (dtype != core::Dtype::fp32) throw std::invalid_argument("all_reduce: the CPU runtime reduces fp32 only");
  const int count = as_int(bytes / 4, "all_reduce");
  OpSpec op = collective_op("all_reduce", bytes);
  op.body = [this, call = collective_call(stream, group, kAllReduce, bytes, "all_reduce"), data = buffer.data, count] {
    check_signature(call);
    MPI_Request req;
    MPI_Iallreduce(MPI_IN_PLACE, data, count, MPI_FLOAT, MPI_SUM, call.comms->comm, &req);
    await_requests(&req, 1, options_.timeout_s, call.label);
  };
  return issue(stream, std::move(op));
}

core::Event CpuRuntime::reduce_scatter(core::StreamId stream, const core::Group& group, const core::Buffer& send,
                                       const core::Buffer& recv, std::uint64_t bytes, core::Dtype dtype,
                                       core::CollectiveAlgo) {
  if (dtype != core::Dtype::fp32) throw std::invalid_argument("reduce_scatter: the CPU runtime reduces fp32 only");
  const int count = as_int(bytes / 4 / static_cast<std::uint64_t>(group.size()), "reduce_scatter");
  OpSpec op = collective_op("reduce_scatter", bytes);
  op.body = [this, call = collective_call(stream, group, kReduceScatter, bytes, "reduce_scatter"), in = send.data,
             out = recv.data, count] {
    check_signature(call);
    MPI_Request req;
    MPI_Ireduce_scatter_block(in, out, count, MPI_FLOAT, MPI_SUM, call.comms->comm, &req);
    await_requests(&req, 1, options_.timeout_s, call.label);
  };
  return issue(stream, std::move(op));
}

core::Event CpuRuntime::all_gather(core::StreamId stream, const core::Group& group, const core::Buffer& send,
                                   const core::Buffer& recv, std::uint64_t bytes, core::CollectiveAlgo) {
  const int part = as_int(bytes / static_cast<std::uint64_t>(group.size()), "all_gather");
  OpSpec op = collective_op("all_gather", bytes);
  op.body = [this, call = collective_call(stream, group, kAllGather, bytes, "all_gather"), in = send.data,
             out = recv.data, part] {
    check_signature(call);
    MPI_Request req;
    MPI_Iallgather(in, part, MPI_BYTE, out, part, MPI_BYTE, call.comms->comm, &req);
    await_requests(&req, 1, options_.timeout_s, call.label);
  };
  return issue(stream, std::move(op));
}

core::Event CpuRuntime::all_to_all(core::StreamId stream, const core::Group& group, const core::Buffer& send,
                                   const std::vector<std::uint64_t>& send_bytes, const core::Buffer& recv,
                                   const std::vector<std::uint64_t>& recv_bytes, core::CollectiveAlgo algo,
                                   const core::NodeTraffic&) {
  // DeepEP's forwarding is a way of moving the same bytes on a GPU cluster: here they move directly.
  const auto n = static_cast<std::size_t>(group.size());
  const std::uint64_t total = check_all_to_all_sizes(group, send, send_bytes, recv, recv_bytes);
  std::vector<int> sc(n), sd(n), rc(n), rd(n);
  for (std::size_t i = 0; i < n; ++i) {
    sc[i] = as_int(send_bytes[i], "all_to_all"), rc[i] = as_int(recv_bytes[i], "all_to_all");
    if (i) sd[i] = sd[i - 1] + sc[i - 1], rd[i] = rd[i - 1] + rc[i - 1];
  }
  const bool hier = algo == core::CollectiveAlgo::hierarchical;
  OpSpec op = collective_op(hier ? "all_to_all/hierarchical" : "all_to_all/direct", total);
  op.body = [this, call = collective_call(stream, group, kAllToAll, 0, "all_to_all"), hier, send, recv, send_bytes,
             recv_bytes, sc = std::move(sc), sd = std::move(sd), rc = std::move(rc), rd = std::move(rd)] {
    check_signature(call);
    GroupComms& c = *call.comms;
    if (hier && c.hierarchical_ok && c.nodes > 1 && c.per_node > 1)
      return hierarchical_all_to_all(c, send, send_bytes, recv, recv_bytes, call.label);
    MPI_Request req;
    MPI_Ialltoallv(send.data, sc.data(), sd.data(), MPI_BYTE, recv.data, rc.data(), rd.data(), MPI_BYTE, c.comm, &req);
    await_requests(&req, 1, options_.timeout_s, call.label);
  };
  return issue(stream, std::move(op));
}

core::Event CpuRuntime::send(core::StreamId stream, int peer, const core::Buffer& buffer, std::uint64_t bytes,
                             int tag) {
  return point_to_point(stream, true, peer, buffer, bytes, tag);
}

core::Event CpuRuntime::recv(core::StreamId stream, int peer, const core::Buffer& buffer, std::uint64_t bytes,
                             int tag) {
  return point_to_point(stream, false, peer, buffer, bytes, tag);
}

core::Event CpuRuntime::point_to_point(core::StreamId stream, bool sending, int peer, const core::Buffer& buffer,
                                       std::uint64_t bytes, int tag) {
  const char* what = sending ? "send" : "recv";
  if (peer < 0 || peer >= size_)
    throw std::invalid_argument(std::string(what) + ": peer rank " + std::to_string(peer) + " but the run has " +
                                std::to_string(size_) + " ranks");
  if (tag < 0 || tag >= (1 << 15))
    throw std::invalid_argument(std::string(what) + ": tag " + std::to_string(tag) + " is outside 0..32767");
  const int count = as_int(bytes, what);
  // Messages match by (source, destination, tag) in issue order, as in the simulator, even when the two streams
  // that issued them post them in another order: the sequence number in the tag pairs the n-th send with the
  // n-th receive.
  const std::int64_t seq = messages_[{sending, peer, tag}]++;
  const int mpi_tag = (tag << tag_bits_) | static_cast<int>(seq & ((std::int64_t{1} << tag_bits_) - 1));
  std::string label = sending ? "send of " + std::to_string(bytes) + " bytes from rank " + std::to_string(rank_) +
                                    " to rank " + std::to_string(peer)
                              : "receive of " + std::to_string(bytes) + " bytes on rank " + std::to_string(rank_) +
                                    " from rank " + std::to_string(peer);
  label += " (tag " + std::to_string(tag) + ", message #" + std::to_string(seq) + ")";
  OpSpec op;
  op.kind = core::SpanKind::comm;
  op.name = what;
  op.bytes = bytes;
  op.body = [this, sending, peer, data = buffer.data, count, mpi_tag, label = std::move(label)] {
    MPI_Request req;
    const int rc = sending ? MPI_Isend(data, count, MPI_BYTE, peer, mpi_tag, comms_->p2p(), &req)
                           : MPI_Irecv(data, count, MPI_BYTE, peer, mpi_tag, comms_->p2p(), &req);
    if (rc != MPI_SUCCESS) throw core::RuntimeFailure(label + " failed in MPI");
    await_requests(&req, 1, options_.timeout_s, label);
  };
  return issue(stream, std::move(op));
}

}  // namespace moesys::exec::cpu
