#pragma once
// Ring memory and expert prefetch with real copies between tiers, written against core::Runtime.
//
// The master copy of every MoE layer's expert states (values, gradients, AdamW moments) lives in a host tier
// (DRAM, or SSD files); the GPU holds K fixed slots, each big enough for one layer's local experts (values and
// gradients). Before a layer computes, its experts are in a slot (the compute stream waits for the copy); after
// its last kernel, backward's gradients are copied back to the home tier and the slot is released, to be refilled
// with a later layer on the H2D stream (paper section "ring memory": calculation-released load). With prefetch the
// free slots are filled ahead of use, in the order the pass will use the layers (forward 0..L-1, backward
// L-1..0), which gives the ring's "release layer i, load layer i+K" in a forward pass and a one-layer look-ahead
// with two slots; without prefetch a slot is filled only when its layer is acquired.
//
// The victim slot is the free one whose layer is needed again latest (Belady: the pass's order is known), and a
// slot is only refilled ahead if that layer is needed later than the one fetched. Slots are invalidated at each
// pass: the optimizer (or a test) changes the home values between passes. Fixed slots: no fragmentation, and the
// same arithmetic on bit-identical copies, so outputs equal those of all-in-memory runs bit for bit.
#include <cstdint>
#include <vector>

#include "exec/model/moe_layer.hpp"

namespace moesys::exec::model {

struct ExpertOffload {
  /// Home of the expert states. hbm: resident, no ring (the reference); dram or ssd: streamed through slots.
  core::Tier home = core::Tier::hbm;
  int slots = 2;         // K
  bool prefetch = true;  // fill free slots ahead of use; false: on demand at acquire
};

struct RingStats {
  std::uint64_t h2d_bytes = 0;   // home -> slot (expert values)
  std::uint64_t d2h_bytes = 0;   // slot -> home (gradients)
  std::uint64_t host_bytes = 0;  // SSD <-> DRAM staging of the optimizer
  int fills_ahead = 0;           // slots filled before their layer was acquired
  int fills_on_demand = 0;       // slots filled by acquire, the compute stream waiting for the copy at once
  int hits = 0;                  // acquires that found the layer already in a slot
};

class ExpertRing {
 public:
  /// The layers' expert parameters must live in `offload.home` (MoeLayerConfig::expert_tier), all with equal
  /// shapes. Allocates the K slots in HBM.
  ExpertRing(core::Runtime& rt, std::vector<MoeLayer*> layers, ExpertOffload offload);
  ~ExpertRing();
  ExpertRing(const ExpertRing&) = delete;
  ExpertRing& operator=(const ExpertRing&) = delete;

  /// Starts a pass that will acquire layers in `order`; forgets what the slots held (values may have changed)
  /// and, with prefetch, starts filling them.
  void begin_pass(std::vector<int> order);
  /// Puts layer `layer`'s experts in a slot, binds the slot to the layer and makes the compute stream wait for it.
  void acquire(int layer);
  /// After the layer's kernels were issued: copies its gradients home when `write_back_grads`, unbinds and
  /// releases the slot, and (prefetch) refills free slots with the next layers of the order.
  void release(int layer, bool write_back_grads);
  /// AdamW on one of the layers' expert parameters where it lives: in DRAM directly (CPU-side optimizer), on
  /// the SSD through DRAM staging (read states, update, write value and moments back).
  void adamw(Param& p, double lr, double beta1, double beta2, double eps, double weight_decay, int step);

  const RingStats& stats() const { return stats_; }
  /// Bytes of one slot (one layer's local expert values and gradients).
  std::uint64_t slot_bytes() const { return slot_bytes_; }

 private:
  struct Slot {
    ExpertTensors t;
    int layer = -1;
    bool busy = false;
    core::Event ready;       // the fill's last copy
    core::Event free_after;  // the last use of the slot (kernels, gradient write-back)
  };
  std::vector<core::Buffer*> values(Slot& s) { return {&s.t.w1, &s.t.b1, &s.t.w2, &s.t.b2}; }
  int slot_of(int layer) const;
  std::size_t next_use(int layer, std::size_t from) const;
  int victim(std::size_t from) const;
  void fill(int slot, int layer);
  void fill_ahead();

  core::Runtime& rt_;
  std::vector<MoeLayer*> layers_;
  ExpertOffload o_;
  std::vector<Slot> slots_;
  std::vector<int> order_;
  std::size_t cursor_ = 0;    // position in order_ of the next acquire
  core::Event written_back_;  // the last gradient copy to the home tier (all on the D2H stream)
  core::Event updated_;       // the last optimizer write of home values
  std::uint64_t slot_bytes_ = 0;
  RingStats stats_;
};

}  // namespace moesys::exec::model
