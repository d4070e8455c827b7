#pragma once
// The training step of one rank (internal to policies/training). Split over files by concern:
//   rank_trainer.cpp     step loop, memory, ZeRO-3 parameter gathers, optimizer step
//   dense_layers.cpp     attention, dense FFN, embedding (replicated or column-partitioned), logits
//   moe_layer.cpp        gate, token-count exchange, chunked dispatch / expert FFN / combine
//   grad_sync.cpp        fused gradient buckets and post-step parameter all-gathers
//   expert_offload.cpp   expert states in host memory or on the SSD, 2D prefetch, LFU cache
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/runtime.hpp"
#include "policies/training/lfu_cache.hpp"
#include "policies/training/training_plan.hpp"

namespace moesys::policies::training {

/// Extra streams beyond the conventional ones (core::streams): ZeRO-3 parameter gathers run on their own stream
/// so that they neither wait behind nor delay gradient reductions (kComm2) or expert all-to-alls (kComm).
inline constexpr core::StreamId kGatherStream = core::streams::kGather;

class RankTrainer {
 public:
  RankTrainer(const TrainingPlan& plan, core::Runtime& rt, RankCounters& counters);
  void run();

 private:
  // ---- rank_trainer.cpp ----
  void allocate_persistent();
  void forward(int step, int micro);
  void backward(int step, int micro, bool sync_grads);
  void optimizer_step();
  /// ZeRO-3: the gathered parameters of use `i` of the current micro-batch's unit sequence.
  void unit_begin(int unit);
  void unit_end();
  core::Event gemm(std::int64_t m, std::int64_t n, std::int64_t k, const char* name, std::int64_t batch = 1);
  /// Backward of a forward GEMM {tokens, out, in}: dgrad {tokens, in, out} and wgrad {in, out, tokens} have the
  /// same FLOPs and operand bytes as each other, so they are issued as one batched GEMM of two.
  core::Event gemm_backward(std::int64_t tokens, std::int64_t out, std::int64_t in, const char* name);
  core::Event elementwise(double bytes_read, double bytes_written, const char* name, double flop = 0);
  core::Event attention_kernel(std::int64_t tokens, bool backward);
  std::int64_t tokens() const { return tokens_; }

  // ---- dense_layers.cpp ----
  void attention_forward();
  void attention_backward();
  void dense_ffn_forward();
  void dense_ffn_backward();
  void embedding_forward();
  void embedding_backward();
  void logits_forward();
  void logits_backward();

  // ---- moe_layer.cpp ----
  void moe_forward(int moe_layer);
  void moe_backward(int moe_layer);
  /// The chunked, overlapped exchange of an MoE layer: rows out to the experts, expert FFN, rows back.
  /// Returns (last expert kernel, last returning all-to-all).
  std::pair<core::Event, core::Event> through_experts(int moe_layer, bool backward,
                                                      const std::vector<std::int64_t>& send,
                                                      const std::vector<std::int64_t>& recv,
                                                      const std::vector<std::int64_t>& expert_rows);
  void expert_ffn(const std::vector<std::int64_t>& rows, bool backward, int chunk, int chunks);
  std::vector<std::uint64_t> chunk_bytes(const std::vector<std::int64_t>& rows, int chunk, int chunks) const;

  // ---- grad_sync.cpp ----
  void add_dense_grads(const std::vector<std::int64_t>& tensors, core::Event ready);
  void add_expert_grads(core::Event ready);
  void flush_grads();
  void gather_updated_params(core::Event after);
  void issue_dense_bucket(double bytes);
  void issue_expert_bucket(double bytes);
  /// The dense parameter tensors in backward order (bytes per element applied by the caller).
  std::vector<std::int64_t> dense_tensors_in_order() const;

  // ---- expert_offload.cpp ----
  /// Starts copying the experts of MoE layer `moe_layer` toward the GPU (one layer ahead); no-op without offload.
  void prefetch_experts(int moe_layer, bool backward);
  /// The event after which the layer's needed experts are on the GPU (fetching missed ones on demand).
  core::Event experts_ready(int moe_layer, bool backward);
  /// After the layer's expert backward: gradients to the host, host optimizer, write-back.
  void offload_expert_update(int moe_layer, core::Event grads_ready);
  void end_step_offload();

  const TrainingPlan& plan_;
  const TrainingConfig& cfg_;
  const core::ModelConfig& model_;
  const TrainingPolicy& policy_;
  const Layout& layout_;
  core::Runtime& rt_;
  RankCounters& counters_;
  const int rank_;
  const double a_;  // bytes per activation / parameter element
  core::Group world_, ep_group_, edp_group_, node_group_, rail_group_;
  core::CollectiveAlgo a2a_algo_;

  // Current micro-batch.
  const MicroBatch* mb_ = nullptr;
  int step_ = 0, micro_ = 0;
  std::int64_t tokens_ = 0;
  bool sync_grads_ = false;                // the last micro-batch of the step: gradients are reduced
  std::vector<core::Buffer> activations_;  // stack: allocated in forward, freed in backward
  core::Event last_compute_;               // the latest event on the compute stream

  // Persistent buffers, one representative per tier (copies only read their tier).
  core::Buffer hbm_, dram_, ssd_;

  // ZeRO-3 gathers: the unit sequence of this micro-batch, gather events and buffer-release events.
  std::vector<int> units_;
  std::vector<core::Event> gathered_, released_;
  int unit_pos_ = -1;

  // Gradient buckets (bytes waiting) and the latest reduction event.
  double dense_bucket_ = 0, expert_bucket_ = 0;
  core::Event last_reduce_;

  // Offload: per MoE layer, the experts prefetched for the current pass and the copy events.
  std::vector<std::vector<bool>> prefetched_;
  std::vector<core::Event> fetch_event_;
  std::vector<core::Event> slot_free_;        // per GPU slot (MoE layer % 2): when its last user is done with it
  std::vector<std::vector<bool>> used_last_;  // per MoE layer: experts that got tokens last time (the prediction)
  std::unique_ptr<LfuCache> cache_;
};

}  // namespace moesys::policies::training
