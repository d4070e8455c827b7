#pragma once
// Expert residency: where the expert states of the MoE layers live, and how they reach the GPU and go back. One
// manager for training offload (ZeRO-Offload / ZeRO-Infinity, MoESys 2D prefetch) and for ring memory, written
// against core::Runtime only, so the same copies run in the simulator (sizes) and on real ranks (the tensors the
// kernels read).
//
// Storage (allocate_expert_storage). Every expert is one block of `expert_elems` parameters, W1 [h][f], b1 [f],
// W2 [f][h], b2 [h], and a layer's L local experts sit back to back (expert-major), in the GPU slots as at home, so
// one expert, a run of experts or a whole layer is one copy. The GPU holds K slots, each one layer's values and
// gradients. The home of the values and optimizer states is host memory (home = dram) or the SSD (home = ssd,
// read and written through a DRAM staging area of two layers); gradients always come home to host memory. An
// expert's optimizer states are [first moment][second moment][the rest, e.g. a master copy], fp32 planes of
// `expert_elems`. With an LFU cache (home = ssd, routed strategy) the cache entries in host memory hold values and
// optimizer states of the experts the cache admits: hits skip the SSD, evictions write the states back.
//
// Strategies (which experts are fetched when, which slot they go to):
//   layer_ahead  ZeRO style: every local expert of the next layer, one layer ahead, whatever the routing.
//   routed       MoESys 2D prefetch, vertical path: ahead of forward, the experts that received tokens the last
//                time this layer ran (the prediction the token-count exchange already provides); after the count
//                exchange, the experts the gate picked that were not predicted, on demand (exposed). Backward
//                fetches the experts that received tokens in forward. Only experts with gradients are updated
//                (lazy AdamW: an expert without tokens this step keeps its values and moments), unless gradients
//                are all-reduced over expert replicas, which must all update alike.
//   ring         ring memory (inference, calculation-released load): prefetch fills every free slot with the next
//                layers of the pass's order, every expert.
// Every strategy picks the victim slot by Belady's rule: the free slot whose layer is needed again latest in the
// pass's order (begin_pass); a layer still in a slot is not fetched again (e.g. the last layers of forward are
// still there when backward starts). Slots are forgotten at begin_step (the optimizer changed the values).
//
// Events: a fill's copies run on the H2D stream after the slot's last use (the kernels of its previous layer and
// the copy of its gradients home); the compute stream waits for the fill before using the slot (acquire), and
// zeroes the slot's gradients only after their last copy home. SSD traffic runs on the NVMe stream; reads of a
// layer's home wait for its last update.
//
// Gradients accumulate in the slot: before backward the slot's gradients are zeroed (first micro-batch of the step)
// or reloaded from host memory (later micro-batches, one H2D copy); after backward they are all-reduced over the
// expert replicas on the last micro-batch (device memory, as NCCL needs), then copied home, overwriting. So the
// host holds the step's sum without a host-side add, and the replicas reduce the whole sum once.
//
// Host optimizer: on the last micro-batch, AdamW (a TensorOp) on host-memory buffers right after the layer's
// gradients are home: on the home itself (dram), on the cache entry (cached experts), or on the staging area after
// reading values and states from the SSD, followed by the write-back (ssd). In the simulator it is costed by its
// memory traffic, (o + g) read and (o + a) written per parameter, times the GPUs whose optimizers share the host
// (and times host_cost_scale: the simulator has no host-side kernels, see ResidencySettings).
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "core/runtime.hpp"
#include "policies/training/lfu_cache.hpp"
#include "policies/training/training_plan.hpp"

namespace moesys::policies::training {

/// The experts one rank holds: `layers` MoE layers of `local` experts of `expert_elems` parameters; bytes per
/// parameter of values (a), gradients (g) and optimizer states (o, at least the two fp32 moments).
struct ExpertShape {
  int layers = 0, local = 0;
  std::int64_t expert_elems = 0;
  double a = 4, g = 4, o = 8;
  std::int64_t layer_elems() const { return std::int64_t{local} * expert_elems; }
};

enum class ResidencyStrategy { layer_ahead, routed, ring };

struct AdamSettings {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0;
};

struct ResidencySettings {
  ResidencyStrategy strategy = ResidencyStrategy::layer_ahead;
  core::Tier home = core::Tier::dram;  // dram, or ssd (through host-memory staging)
  int slots = 2;                       // K
  std::int64_t cache_entries = 0;      // LFU cache of expert states in host memory (home = ssd, routed only)
  CacheSettings cache;
  bool train = true;        // gradients and optimizer states (false: values only, read-only inference)
  /// Home in pageable host memory (home = dram, read-only): every fetch is a host copy into a pinned staging area
  /// of one layer, then the DMA, as the CUDA driver does for pageable memory.
  bool pageable = false;
  int host_sharers = 1;     // GPUs whose host optimizers share the host's memory bandwidth (simulator cost)
  /// The simulator costs every kernel at the GPU's memory bandwidth; a kernel on host memory runs slower by
  /// (HBM bandwidth / host-memory bandwidth), so its traffic is charged scaled by that ratio (real runtimes only
  /// report the traffic fields in their spans).
  double host_cost_scale = 1;
  AdamSettings adam;
  core::Dtype dtype = core::Dtype::fp32;  // of the values (the simulator costs kernels at this width)
  bool uses_cache() const {
    return home == core::Tier::ssd && strategy == ResidencyStrategy::routed && cache_entries > 0;
  }
};

struct ExpertStorage {
  std::vector<core::Buffer> slot_params, slot_grads;  // HBM: K slots of one layer each
  core::Buffer home_params, home_opt;                 // DRAM or SSD: every layer
  core::Buffer home_grads;                            // DRAM: every layer (train)
  core::Buffer staging;  // DRAM: two layers' values + optimizer states (home = ssd), one layer's values (pageable)
  core::Buffer cache;                                 // DRAM: cache entries of values + optimizer states
};

/// Host-memory bytes the storage takes besides the LFU cache (the memory plan sizes the cache from the rest).
double expert_host_bytes_besides_cache(const ExpertShape& s, const ResidencySettings& r);
/// Bytes of one cache entry: one expert's values and optimizer states.
double expert_cache_entry_bytes(const ExpertShape& s);
/// Allocates the storage, tagged with the memory plan's uses (parameters, gradients, optimizer, buffers, cache).
ExpertStorage allocate_expert_storage(core::Runtime& rt, const ExpertShape& s, const ResidencySettings& r);

class ExpertResidency {
 public:
  ExpertResidency(core::Runtime& rt, ExpertShape shape, ResidencySettings settings, ExpertStorage storage,
                  RankCounters& counters);

  /// The values and gradients of every local expert of `layer` in its slot (valid from acquire to release).
  struct Views {
    core::Buffer params, grads;
  };
  Views views(int layer) const;

  /// A new optimizer step (1-based for AdamW): the slots' contents are stale, no gradient is home yet.
  void begin_step(int step);
  /// The order in which the coming pass acquires layers (victim choice; the ring fills slots in this order).
  /// `last_micro`: the step's last micro-batch, after whose backward the host optimizer runs.
  void begin_pass(std::vector<int> order, bool last_micro = true);
  /// Fetches ahead of use. layer_ahead: every expert of `layer`; routed: the predicted experts (forward) or those
  /// in `used` (backward); ring: fills free slots with the next layers of the order (`layer` is ignored).
  void prefetch(int layer, bool backward, const std::vector<bool>& used);
  /// Makes `layer` resident for a pass over it: fetches on demand what `used` (the experts with tokens, known after
  /// the count exchange) needs and was not fetched, and makes `stream` wait for the slot.
  void acquire(int layer, bool backward, const std::vector<bool>& used, core::StreamId stream);
  /// Forward: the slot may be refilled once `last_use` (its last kernel) completes.
  void release(int layer, core::Event last_use);
  /// Backward, before the kernels accumulate into the slot's gradients: zero them, or reload the sum of the step's
  /// earlier micro-batches; `stream` waits.
  void begin_grads(int layer, core::StreamId stream);
  /// Backward, after the kernels (`grads_ready`): on the last micro-batch all-reduce over `replicas` (when more
  /// than one) on `comm`; copy the gradients home; on the last micro-batch run the host optimizer. Releases the slot.
  /// Returns the all-reduce's event (or `grads_ready`).
  core::Event end_grads(int layer, core::Event grads_ready, const std::vector<bool>& used, bool last_micro,
                        const core::Group& replicas, core::StreamId comm);
  /// End of a step: the LFU cache's decay.
  void end_step();

  int slots() const { return static_cast<int>(slots_.size()); }

 private:
  struct Slot {
    int layer = -1;
    std::vector<bool> has;  // experts whose values are in the slot
    bool busy = false;
    core::Event ready;       // the fill's last copy
    core::Event free_after;  // the last kernel that read the values (or the gradients' copy home, which follows it)
    core::Event grads_home;  // the last copy of the slot's gradients home (a later forward does not replace it)
  };
  struct Stage {  // a host-memory staging area (home = ssd): one layer's values and optimizer states
    int layer = -1;
    std::vector<bool> values, states;
    core::Event last;
  };
  struct Entry {  // a cache entry
    std::int64_t key = -1;
    core::Event last;
  };

  std::size_t next_use(int layer, std::size_t from) const;
  int find(int layer) const;
  int acquired(int layer, const char* what) const;  // the slot of an acquired layer (throws otherwise)
  /// A free slot for `layer` (Belady), or -1 when every free slot holds a layer needed before it.
  int victim(int layer) const;
  /// Copies the experts of `want` that the slot lacks into it; returns how many.
  int fill(int slot, int layer, const std::vector<bool>& want);
  void fill_ahead();
  // Sources of values: home (dram), cache entry or staging (ssd).
  core::Buffer home_values(int layer, int e0, int e1, const core::Buffer& home, double per) const;
  int entry_of(int layer, int e) const;  // -1: not cached
  /// LFU access from a forward fetch: admits (reading the states from the SSD, writing back a victim).
  void cache_access(int layer, int e);
  Stage& stage_for(int layer);
  /// Reads values (and optimizer states when `states`) of the experts in `want` from the SSD into the layer's stage.
  void stage_from_ssd(int layer, const std::vector<bool>& want, bool states);
  void host_update(int layer, const std::vector<bool>& experts);
  /// AdamW of one expert on host memory.
  core::Event adamw(const core::Buffer& grads, const core::Buffer& params, const core::Buffer& opt);
  /// Values and optimizer states of staging area k (home = ssd): [values of a layer][states of a layer].
  core::Buffer stage_values(int k) const;
  core::Buffer stage_states(int k) const;

  core::Runtime& rt_;
  ExpertShape sh_;
  ResidencySettings set_;
  ExpertStorage st_;
  RankCounters& counters_;
  std::unique_ptr<LfuCache> cache_;
  std::vector<Entry> entries_;
  std::map<std::int64_t, int> entry_of_key_;
  std::vector<Slot> slots_;
  Stage stages_[2];
  std::vector<int> order_;
  std::size_t cursor_ = 0;
  int step_ = 1;
  bool backward_ = false, last_micro_ = true;  // of the pass in progress
  // Per layer: the routing seen last in forward (routed prediction), experts fetched ahead in this pass, experts
  // whose gradients of an earlier micro-batch of this step are home, and the last write of the layer's home.
  std::vector<std::vector<bool>> used_last_, prefetched_, accumulated_;
  std::vector<core::Event> home_written_, grads_home_;
};

}  // namespace moesys::policies::training
