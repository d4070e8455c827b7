#pragma once
// The cores of one machine as slots that kernels take whole, in the order they ask, shared by every rank on the
// machine.
//
// Ranks that oversubscribe the cores (4 ranks on 2 cores in CI) would otherwise leave their kernels to the
// operating system's time slices: a kernel stops halfway for another rank's, the ranks drift apart by a slice,
// and a collective waits for whichever member the scheduler served last. A GPU runs kernels on its execution
// units until they finish; so does this machine with slots: a kernel takes a ticket, runs once its ticket is
// among the first `slots` not yet finished, and then lets the next ticket run. Tickets keep the order fair: a
// counting semaphore lets the rank that releases a slot take it straight back for its next kernel, so one rank
// runs ahead while the others' collectives wait for it. The simulator models the same slots
// (NodeSpec::compute_slots: kernels take a slot whole, in arrival order).
#include <atomic>
#include <cstdint>
#include <string>

namespace moesys::exec::cpu {

class ComputeSlots {
 public:
  /// Collective over MPI_COMM_WORLD: the ranks on each machine map one shared ticket counter. `slots` <= 0
  /// leaves kernels to the operating system (no slots).
  ComputeSlots(int slots, double timeout_s);
  ~ComputeSlots();
  ComputeSlots(const ComputeSlots&) = delete;
  ComputeSlots& operator=(const ComputeSlots&) = delete;

  /// Holds a slot for its lifetime; throws core::RuntimeFailure if its turn does not come within the timeout.
  class Held {
   public:
    explicit Held(const ComputeSlots& slots);
    ~Held();
    Held(const Held&) = delete;
    Held& operator=(const Held&) = delete;

   private:
    const ComputeSlots* slots_;
  };

  int slots() const { return slots_; }

 private:
  struct Shared {                       // in memory shared by the machine's ranks
    std::atomic<std::uint64_t> tickets;   // tickets handed out
    std::atomic<std::uint32_t> finished;  // kernels finished (wraps; compared modulo 2^32); the futex word
  };
  int slots_ = 0;
  double timeout_s_ = 0;
  Shared* shared_ = nullptr;
};

/// Cores of this machine divided by the BLAS threads one kernel uses: the kernels that run at once at full rate.
int default_compute_slots();

}  // namespace moesys::exec::cpu
