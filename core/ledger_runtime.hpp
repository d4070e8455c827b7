#pragma once
// A runtime that only keeps the memory ledger: allocations are counted (in tiers without a capacity limit),
// operations complete at once and do nothing, buffers carry no data. Running a per-rank program on it yields the
// program's own memory use per tier and tag, at its peak, before anything is simulated or run: the memory plan
// and its feasibility check come from the program itself rather than from a second list of its allocations.
#include <functional>
#include <string>
#include <vector>

#include "core/runtime.hpp"

namespace moesys::core {

class LedgerRuntime final : public Runtime {
public:
  LedgerRuntime(const ClusterSpec& spec, int rank, int world_size);

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  const ClusterSpec& cluster() const override { return spec_; }
  double now_s() const override { return 0; }

  Buffer alloc(Tier tier, std::uint64_t bytes, const std::string& tag) override;
  void free(Buffer& buffer) override;
  const MemoryLedger& memory() const override { return ledger_; }

  /// Every kernel the program issues is passed to `observer` (e.g. to list the kernels a machine probe measures).
  void observe_kernels(std::function<void(const Kernel&, std::string_view name)> observer) {
    observer_ = std::move(observer);
  }
  Event compute(StreamId, const Kernel& kernel, std::string_view name) override {
    if (observer_) observer_(kernel, name);
    return {};
  }
  Event copy(StreamId, const Buffer&, const Buffer&, std::uint64_t) override { return {}; }
  Event send(StreamId, int, const Buffer&, std::uint64_t, int) override { return {}; }
  Event recv(StreamId, int, const Buffer&, std::uint64_t, int) override { return {}; }
  Event all_reduce(StreamId, const Group&, const Buffer&, std::uint64_t, Dtype, CollectiveAlgo) override { return {}; }
  Event reduce_scatter(StreamId, const Group&, const Buffer&, const Buffer&, std::uint64_t, Dtype,
                       CollectiveAlgo) override {
    return {};
  }
  Event all_gather(StreamId, const Group&, const Buffer&, const Buffer&, std::uint64_t, CollectiveAlgo) override {
    return {};
  }
  Event all_to_all(StreamId, const Group&, const Buffer&, const std::vector<std::uint64_t>&, const Buffer&,
                   const std::vector<std::uint64_t>&, CollectiveAlgo, const NodeTraffic&) override {
    return {};
  }

  void wait(Event) override {}
  void stream_wait(StreamId, Event) override {}
  void synchronize() override {}
  void begin_phase(std::string_view) override {}
  void end_phase() override {}
  const std::vector<Span>& spans() const override { return spans_; }

private:
  const ClusterSpec& spec_;
  int rank_, world_;
  MemoryLedger ledger_;
  std::vector<std::string> tags_;  // by buffer id - 1
  std::vector<Span> spans_;
  std::function<void(const Kernel&, std::string_view)> observer_;
};

}  // namespace moesys::core
