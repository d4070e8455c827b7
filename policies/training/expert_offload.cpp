// Expert states outside the GPU (hierarchical storage). The GPU holds the fp16 parameters and gradients of two
// MoE layers' local experts (two slots: the layer computing and the one being fetched); everything else lives
// in host memory (offload = cpu, ZeRO-Offload) or on the SSD (offload = nvme, ZeRO-Infinity / MoESys).
//
// Fetching, one MoE layer ahead on the copy streams:
//   all-experts (ZeRO style): every local expert of the next layer, whatever the routing; with nvme every
//            expert's states are read from the SSD every step and written back after the host optimizer.
//   2d (MoESys vertical prefetch): the experts that received tokens the last time this layer ran (the prediction
//            the token-count exchange provides); experts the gate then picks that were not predicted are fetched
//            on demand, exposed. With nvme the states go through the LFU cache in host memory: hits skip the SSD,
//            and only evicted or uncached states are written back.
// Backward re-fetches the parameters of the experts that were used (from host memory); gradients go back to the
// host every micro-batch; the host optimizer runs on the last one. It is memory-bound: its traffic is charged
// as a host-memory copy, multiplied by the GPUs of the node whose optimizers share the socket's bandwidth.
#include "policies/training/rank_trainer.hpp"

namespace moesys::policies::training {

namespace {
double expert_bytes(const core::ModelConfig& m, int bytes_per_param) {
  return static_cast<double>(m.expert_params_per_expert()) * bytes_per_param;
}
}  // namespace

void RankTrainer::prefetch_experts(int moe_layer, bool backward) {
  if (policy_.offload == Offload::none) return;
  const auto li = static_cast<std::size_t>(moe_layer);
  const int local = layout_.local_experts;
  const LayerRouting& lr = mb_->layers[li];
  std::vector<bool> want(static_cast<std::size_t>(local), true);
  for (int e = 0; e < local; ++e) {
    const bool used = lr.expert_rows[static_cast<std::size_t>(rank_)][static_cast<std::size_t>(e)] > 0;
    if (backward)
      want[static_cast<std::size_t>(e)] = policy_.prefetch == Prefetch::all_experts || used;
    else if (policy_.prefetch == Prefetch::routed)
      want[static_cast<std::size_t>(e)] = used_last_[li][static_cast<std::size_t>(e)];
  }
  const int a = model_.param_bytes_per_param(), o = model_.optimizer_bytes_per_param();
  double from_ssd = 0, write_back = 0, to_gpu = 0;
  for (int e = 0; e < local; ++e) {
    if (!want[static_cast<std::size_t>(e)]) continue;
    prefetched_[li][static_cast<std::size_t>(e)] = true;
    to_gpu += expert_bytes(model_, a);
    ++counters_.expert_fetches;
    if (backward || policy_.offload != Offload::nvme) continue;
    if (!cache_) {
      from_ssd += expert_bytes(model_, a + o);
      continue;
    }
    LfuCache::Access acc = cache_->access(std::int64_t{moe_layer} * local + e);
    if (acc.hit) {
      ++counters_.cache_hits;
      continue;
    }
    ++counters_.cache_misses;
    from_ssd += expert_bytes(model_, a + o);
    if (acc.evicted) {
      ++counters_.cache_evictions;
      write_back += expert_bytes(model_, a + o);
    }
  }
  const core::Buffer hbm_ = st_.slot_params[li % 2], dram_ = st_.home_grads, ssd_ = st_.home_params;
  core::Event ready;
  if (write_back > 0) {
    rt_.copy(core::streams::kNvme, ssd_, dram_, static_cast<std::uint64_t>(write_back));
    counters_.ssd_write_bytes += write_back;
  }
  if (from_ssd > 0) {
    ready = rt_.copy(core::streams::kNvme, dram_, ssd_, static_cast<std::uint64_t>(from_ssd));
    counters_.ssd_read_bytes += from_ssd;
  }
  if (to_gpu > 0) {
    rt_.stream_wait(core::streams::kH2D, ready);
    rt_.stream_wait(core::streams::kH2D, slot_free_[li % 2]);
    ready = rt_.copy(core::streams::kH2D, hbm_, dram_, static_cast<std::uint64_t>(to_gpu));
  }
  fetch_event_[li] = ready;
}

core::Event RankTrainer::experts_ready(int moe_layer, bool backward) {
  if (policy_.offload == Offload::none) return {};
  const auto li = static_cast<std::size_t>(moe_layer);
  const LayerRouting& lr = mb_->layers[li];
  const int a = model_.param_bytes_per_param(), o = model_.optimizer_bytes_per_param();
  double on_demand = 0, from_ssd = 0;
  for (int e = 0; e < layout_.local_experts; ++e) {
    const auto ei = static_cast<std::size_t>(e);
    const bool used = lr.expert_rows[static_cast<std::size_t>(rank_)][ei] > 0;
    if (used && !prefetched_[li][ei]) {
      ++counters_.on_demand_fetches;
      ++counters_.expert_fetches;
      on_demand += expert_bytes(model_, a);
      if (!backward && policy_.offload == Offload::nvme) {
        const bool hit = cache_ && cache_->access(std::int64_t{moe_layer} * layout_.local_experts + e).hit;
        if (!hit) from_ssd += expert_bytes(model_, a + o);
      }
    }
    if (!backward && !used && prefetched_[li][ei]) ++counters_.wasted_fetches;
    if (!backward) used_last_[li][ei] = used;
    prefetched_[li][ei] = false;
  }
  const core::Buffer hbm_ = st_.slot_params[li % 2], dram_ = st_.home_grads, ssd_ = st_.home_params;
  core::Event ready = fetch_event_[li];
  if (on_demand > 0) {
    // The host learns about these experts only from the token counts, so the fetch starts now and is exposed.
    core::Event read;
    if (from_ssd > 0) {
      read = rt_.copy(core::streams::kNvme, dram_, ssd_, static_cast<std::uint64_t>(from_ssd));
      counters_.ssd_read_bytes += from_ssd;
    }
    rt_.stream_wait(core::streams::kH2D, read);
    ready = rt_.copy(core::streams::kH2D, hbm_, dram_, static_cast<std::uint64_t>(on_demand));
  }
  return ready;
}

void RankTrainer::offload_expert_update(int moe_layer, core::Event grads_ready) {
  const auto li = static_cast<std::size_t>(moe_layer);
  const LayerRouting& lr = mb_->layers[li];
  const int local = layout_.local_experts;
  int updated = 0, uncached = 0;
  for (int e = 0; e < local; ++e) {
    const bool used = lr.expert_rows[static_cast<std::size_t>(rank_)][static_cast<std::size_t>(e)] > 0;
    if (!used && policy_.prefetch == Prefetch::routed) continue;  // no tokens, no gradient to apply
    ++updated;
    if (!cache_ || !cache_->contains(std::int64_t{moe_layer} * local + e)) ++uncached;
  }
  if (updated == 0) return;
  const int a = model_.param_bytes_per_param(), g = model_.grad_bytes_per_param(),
            o = model_.optimizer_bytes_per_param();
  const bool sync_grads_ = micro_ + 1 == plan_.routing.micro_batches;
  const core::Buffer hbm_ = st_.slot_grads[li % 2], dram_ = st_.home_grads, ssd_ = st_.home_params, none = hbm_;
  if (sync_grads_ && layout_.edp > 1) {
    rt_.stream_wait(core::streams::kComm2, grads_ready);
    grads_ready = last_reduce_ =
        rt_.all_reduce(core::streams::kComm2, edp_group_, none,
                       static_cast<std::uint64_t>(updated * expert_bytes(model_, g)), model_.dtype);
  }
  rt_.stream_wait(core::streams::kD2H, grads_ready);
  core::Event d2h =
      rt_.copy(core::streams::kD2H, dram_, hbm_, static_cast<std::uint64_t>(updated * expert_bytes(model_, g)));
  slot_free_[li % 2] = d2h;
  if (!sync_grads_) return;
  const double traffic = (o + g) + (o + a);  // bytes per parameter the host AdamW reads and writes
  const double shared = cfg_.cluster.node.gpus;
  core::Event adam = rt_.copy(core::streams::kD2H, dram_, dram_,
                              static_cast<std::uint64_t>(updated * expert_bytes(model_, 1) * traffic / 2 * shared));
  if (policy_.offload == Offload::nvme && uncached > 0) {
    rt_.stream_wait(core::streams::kNvme, adam);
    rt_.copy(core::streams::kNvme, ssd_, dram_, static_cast<std::uint64_t>(uncached * expert_bytes(model_, a + o)));
    counters_.ssd_write_bytes += uncached * expert_bytes(model_, a + o);
  }
}

void RankTrainer::end_step_offload() {
  if (cache_) cache_->end_step();
}

}  // namespace moesys::policies::training
