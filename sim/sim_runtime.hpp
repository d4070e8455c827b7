#pragma once
// The SimGrid implementation of core::Runtime for one rank. Each stream is a SimGrid actor on the rank's GPU
// host that runs the stream's operations in order; the rank's own actor issues operations and waits on events.
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/runtime.hpp"
#include "sim/sim_world.hpp"

namespace moesys::sim {

class SimRuntime final : public core::Runtime {
public:
  SimRuntime(SimWorld& world, int rank, int world_size);

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  const core::ClusterSpec& cluster() const override { return world_.spec(); }
  double now_s() const override;

  core::Buffer alloc(core::Tier tier, std::uint64_t bytes, const std::string& tag) override;
  void free(core::Buffer& buffer) override;
  const core::MemoryLedger& memory() const override { return ledger_; }

  core::Event compute(core::StreamId stream, const core::Kernel& kernel, std::string_view name) override;
  core::Event copy(core::StreamId stream, const core::Buffer& dst, const core::Buffer& src,
                   std::uint64_t bytes) override;
  core::Event send(core::StreamId stream, int peer, const core::Buffer& buffer, std::uint64_t bytes, int tag) override;
  core::Event recv(core::StreamId stream, int peer, const core::Buffer& buffer, std::uint64_t bytes, int tag) override;
  core::Event all_reduce(core::StreamId stream, const core::Group& group, const core::Buffer& buffer,
                         std::uint64_t bytes, core::Dtype dtype, core::CollectiveAlgo algo) override;
  core::Event reduce_scatter(core::StreamId stream, const core::Group& group, const core::Buffer& send,
                             const core::Buffer& recv, std::uint64_t bytes, core::Dtype dtype,
                             core::CollectiveAlgo algo) override;
  core::Event all_gather(core::StreamId stream, const core::Group& group, const core::Buffer& send,
                         const core::Buffer& recv, std::uint64_t bytes, core::CollectiveAlgo algo) override;
  core::Event all_to_all(core::StreamId stream, const core::Group& group, const core::Buffer& send,
                         const std::vector<std::uint64_t>& send_bytes, const core::Buffer& recv,
                         const std::vector<std::uint64_t>& recv_bytes, core::CollectiveAlgo algo) override;

  void wait(core::Event event) override;
  void stream_wait(core::StreamId stream, core::Event event) override;
  void synchronize() override;

  void begin_phase(std::string_view name) override;
  void end_phase() override;
  const std::vector<core::Span>& spans() const override { return spans_; }

private:
  struct Op {
    std::uint64_t event = 0;
    std::vector<std::uint64_t> deps;
    core::SpanKind kind = core::SpanKind::compute;
    std::string name;
    std::uint64_t bytes = 0;
    double flop = 0;
    std::function<void()> body;
  };
  struct Stream {
    std::deque<Op> queue;
    std::vector<std::uint64_t> next_deps;
    sg::sg4::ConditionVariablePtr cv;
  };

  core::Event enqueue(core::StreamId stream, Op op);
  void stream_loop(core::StreamId stream);
  core::Event collective(core::StreamId stream, CollectiveOp op, const core::Group& group, double bytes,
                         core::CollectiveAlgo algo, std::vector<double> row, std::uint64_t traced_bytes);
  core::Event point_to_point(core::StreamId stream, int src, int dst, std::uint64_t bytes, int tag, bool sending);
  void check_member(const core::Group& group, const char* what) const;

  SimWorld& world_;
  int rank_, world_size_;
  core::MemoryLedger ledger_;
  std::map<core::StreamId, Stream> streams_;
  std::unordered_set<std::uint64_t> pending_;  // events not yet complete
  sg::sg4::ConditionVariablePtr done_cv_ = sg::sg4::ConditionVariable::create();
  std::uint64_t next_event_ = 1, next_buffer_ = 1;
  std::unordered_map<std::uint64_t, std::string> buffer_tags_;  // live buffers -> their ledger tag
  std::map<std::string, std::uint64_t> sequence_;  // per group / peer pair: calls issued so far
  std::vector<core::Span> spans_;
  std::vector<std::pair<std::string, double>> open_phases_;
};

}  // namespace moesys::sim
